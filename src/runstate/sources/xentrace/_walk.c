/*
 * Walking xentrace files: windows and variable-length records -> columns.
 *
 * Why C: a record's length is only known from its header word, so finding the
 * next record is inherently sequential; a 40 MB trace has millions of records
 * and a Python loop over them takes seconds.  This file only walks and decodes
 * (the decoding itself is walk_core.h); merging the per-pcpu streams, member
 * indices and all semantics live in Python (reader.py), on the columns
 * written here.  Exact mode on a file takes the fast path (_job.c, _merge.c)
 * where it can.
 *
 * The walker is resumable: all position state lives in the caller's `cursor`
 * array, so it can stop when the output is full or the buffer ends (stdin)
 * and continue later from exactly the same place.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../../kernel_abi.h"
#include "walk_core.h"

typedef struct {
    int64_t *tsc, *key, *aux, *off;
    int8_t *kind, *old, *new;
    int16_t *pcpu;
    Py_ssize_t n, cap;
} Out;

static void emit(Out *o, const Row *r, int pcpu)
{
    Py_ssize_t i = o->n++;
    o->tsc[i] = r->tsc;
    /* packed: ids in bits 0-31, kind 32-39, old 40-47, new 48-55 (see walk.py) */
    o->key[i] = (r->key & 0xffffffffLL) | (int64_t)r->kind << 32 | (int64_t)r->old << 40 |
                (int64_t)r->new << 48;
    o->kind[i] = (int8_t)r->kind;
    o->old[i] = (int8_t)r->old;
    o->new[i] = (int8_t)r->new;
    o->aux[i] = r->aux;
    o->pcpu[i] = (int16_t)pcpu;
    o->off[i] = r->off;
}

static void run(Walk *w, Out *o)
{
    w->status = ST_MORE;
    while (o->n < o->cap) {
        leave_window_if_done(w);
        Row row = {0, 0, 0, 0, 0, 0, 0}; /* set by record() when it returns REC_ROW */
        int r = w->wend < 0 ? enter_window(w) : record(w, &row);
        if (r == REC_ROW)
            emit(o, &row, (int)w->pcpu);
        else if (r != REC_NONE)
            return; /* status already set (MORE or ERROR) */
    }
    w->status = ST_FULL;
}

/* ---- argument plumbing ------------------------------------------------- */
/* Every array is checked for element type, contiguity and length, and the
 * cursor's positions and every code used as an index for its range, before
 * the walk starts: a caller's mistake is a ValueError, never a stray access. */

typedef struct {
    Py_buffer v[24];
    int n;
} Views;

static void *view(Views *vs, PyObject *obj, const char *name, int kind, Py_ssize_t itemsize,
                  Py_ssize_t *count, int writable)
{
    if (vs->n >= (int)(sizeof vs->v / sizeof vs->v[0])) {
        PyErr_SetString(PyExc_ValueError, "too many arrays");
        return NULL;
    }
    void *p = abi_view(&vs->v[vs->n], obj, name, kind, itemsize, writable, count);
    if (p != NULL)
        vs->n++;
    return p;
}

static void release(Views *vs)
{
    for (int i = 0; i < vs->n; i++)
        PyBuffer_Release(&vs->v[i]);
    vs->n = 0;
}

static PyObject *refuse(Views *vs, const char *msg)
{
    release(vs);
    PyErr_SetString(PyExc_ValueError, msg);
    return NULL;
}

static int tuple_of(PyObject *t, Py_ssize_t n, const char *name)
{
    if (PyTuple_Check(t) && PyTuple_GET_SIZE(t) == n)
        return 0;
    PyErr_Format(PyExc_ValueError, "%s must be a %zd-tuple of arrays", name, n);
    return -1;
}

/* the cursor's position must lie in the bytes handed over, and an open
 * window's pcpu must index pcpu_tsc */
static const char *cursor_error(const int64_t *cur, int64_t base, int64_t end)
{
    if (cur[C_OFF] < base || cur[C_OFF] > end)
        return "cursor outside the buffer";
    if (cur[C_WEND] >= 0 && (cur[C_WEND] < cur[C_OFF] || cur[C_PCPU] < 0 ||
                             cur[C_PCPU] >= MAX_PCPUS))
        return "cursor names an impossible window";
    return NULL;
}

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    PyObject *buf_o, *cur_o, *stats_o, *ptsc_o, *cols;
    long long base, limit;
    int flags;
    (void)self;
    if (!PyArg_ParseTuple(args, "OLLOOOOi", &buf_o, &base, &limit, &cur_o, &stats_o, &ptsc_o,
                          &cols, &flags))
        return NULL;
    if (tuple_of(cols, 8, "cols") < 0)
        return NULL;
    Views vs = {.n = 0};
    Walk w;
    Out o;
    Py_ssize_t blen, nc, ns, np_, caps[8];
    const uint8_t *buf;
    int64_t *cur, *stats;
    if (!(buf = view(&vs, buf_o, "buf", AK_BYTES, 1, &blen, 0)) ||
        !(cur = view(&vs, cur_o, "cursor", AK_SIGNED, 8, &nc, 1)) ||
        !(stats = view(&vs, stats_o, "stats", AK_SIGNED, 8, &ns, 1)) ||
        !(w.pcpu_tsc = view(&vs, ptsc_o, "pcpu_tsc", AK_SIGNED, 8, &np_, 1)) ||
        !(o.tsc = view(&vs, PyTuple_GET_ITEM(cols, 0), "tsc", AK_SIGNED, 8, &caps[0], 1)) ||
        !(o.key = view(&vs, PyTuple_GET_ITEM(cols, 1), "key", AK_SIGNED, 8, &caps[1], 1)) ||
        !(o.kind = view(&vs, PyTuple_GET_ITEM(cols, 2), "kind", AK_SIGNED, 1, &caps[2], 1)) ||
        !(o.old = view(&vs, PyTuple_GET_ITEM(cols, 3), "old", AK_SIGNED, 1, &caps[3], 1)) ||
        !(o.new = view(&vs, PyTuple_GET_ITEM(cols, 4), "new", AK_SIGNED, 1, &caps[4], 1)) ||
        !(o.aux = view(&vs, PyTuple_GET_ITEM(cols, 5), "aux", AK_SIGNED, 8, &caps[5], 1)) ||
        !(o.pcpu = view(&vs, PyTuple_GET_ITEM(cols, 6), "pcpu", AK_SIGNED, 2, &caps[6], 1)) ||
        !(o.off = view(&vs, PyTuple_GET_ITEM(cols, 7), "off", AK_SIGNED, 8, &caps[7], 1))) {
        release(&vs);
        return NULL;
    }
    if (nc != N_CURSOR || ns != N_STATS || np_ != MAX_PCPUS)
        return refuse(&vs, "cursor, stats or pcpu_tsc array has the wrong length");
    if (base < 0 || base > INT64_MAX - blen)
        return refuse(&vs, "impossible buffer base offset");
    o.cap = caps[0];
    for (int i = 1; i < 8; i++)
        if (caps[i] != o.cap)
            return refuse(&vs, "output columns differ in length");
    o.n = 0;
    w.buf = buf;
    w.base = base;
    w.end = base + blen;
    if (limit >= 0 && limit < w.end)
        w.end = limit;
    w.flags = flags;
    const char *bad = cursor_error(cur, base, w.end);
    if (bad != NULL)
        return refuse(&vs, bad);
    walk_load(&w, cur, stats);
    Py_BEGIN_ALLOW_THREADS
    run(&w, &o);
    Py_END_ALLOW_THREADS
    walk_save(&w, cur, stats);
    release(&vs);
    return PyLong_FromSsize_t(o.n);
}

/* index(buf, base, cursor, out_end, out_pcpu, out_first, flags) -> n
 * Walks window headers only (plus each window's first timestamped record). */
static PyObject *py_index(PyObject *self, PyObject *args)
{
    PyObject *buf_o, *cur_o, *off_o, *pcpu_o, *first_o;
    long long base;
    int flags;
    (void)self;
    if (!PyArg_ParseTuple(args, "OLOOOOi", &buf_o, &base, &cur_o, &off_o, &pcpu_o, &first_o,
                          &flags))
        return NULL;
    Views vs = {.n = 0};
    Py_ssize_t blen, nc, c1, c2, c3;
    const uint8_t *buf;
    int64_t *cur, *ooff, *ofirst;
    int32_t *opcpu;
    if (!(buf = view(&vs, buf_o, "buf", AK_BYTES, 1, &blen, 0)) ||
        !(cur = view(&vs, cur_o, "cursor", AK_SIGNED, 8, &nc, 1)) ||
        !(ooff = view(&vs, off_o, "out_end", AK_SIGNED, 8, &c1, 1)) ||
        !(opcpu = view(&vs, pcpu_o, "out_pcpu", AK_SIGNED, 4, &c2, 1)) ||
        !(ofirst = view(&vs, first_o, "out_first", AK_SIGNED, 8, &c3, 1))) {
        release(&vs);
        return NULL;
    }
    if (nc != N_CURSOR)
        return refuse(&vs, "cursor array has the wrong length");
    if (c2 != c1 || c3 != c1)
        return refuse(&vs, "output arrays differ in length");
    if (base < 0 || base > INT64_MAX - blen)
        return refuse(&vs, "impossible buffer base offset");
    if (cur[C_OFF] < base || cur[C_OFF] > base + blen)
        return refuse(&vs, "cursor outside the buffer");
    Py_ssize_t cap = c1;
    int64_t stats[N_STATS];
    memset(stats, 0, sizeof stats);
    Walk w = {.buf = buf, .base = base, .end = base + blen, .pcpu_tsc = NULL, .flags = flags};
    walk_load(&w, cur, stats);
    w.wend = -1;
    Py_ssize_t n = 0;
    w.status = ST_MORE;
    while (n < cap) {
        int r = enter_window(&w);
        if (r != 0)
            break;
        int64_t wend = w.wend < w.end ? w.wend : w.end; /* where the window ends */
        ooff[n] = wend;
        opcpu[n] = (int32_t)w.pcpu;
        ofirst[n] = window_first_tsc(w.buf, base, w.off, wend);
        n++;
        w.off = wend;
        w.wend = -1;
    }
    if (n == cap)
        w.status = ST_FULL;
    walk_save(&w, cur, stats);
    release(&vs);
    return PyLong_FromSsize_t(n);
}

/* An open-addressing table (size a power of 2, empty slots hold key -1,
 * linear probing) whose values index member arrays of n_members rows.  The
 * probe loop ends only at a match or an empty slot, so a table must keep one
 * empty slot; a value outside the members would index beyond them. */
static const char *table_error(const int64_t *tkeys, const int32_t *tvals, Py_ssize_t nt,
                               Py_ssize_t nt2, Py_ssize_t n_members)
{
    if (nt == 0 || (nt & (nt - 1)) != 0 || nt2 != nt)
        return "table arrays must have the same power-of-2 length";
    Py_ssize_t empty = 0;
    for (Py_ssize_t i = 0; i < nt; i++) {
        if (tkeys[i] < 0)
            empty++;
        else if (n_members >= 0 && (tvals[i] < 0 || tvals[i] >= n_members))
            return "table value names no member";
    }
    return empty ? NULL : "table has no empty slot";
}

/* lookup(keys, out, tkeys, tvals) -> misses
 * Member index of each key from the table.  Keys < 0 (markers) map to -1;
 * unknown keys map to -2 and are counted so the caller can register them. */
static PyObject *py_lookup(PyObject *self, PyObject *args)
{
    PyObject *k_o, *o_o, *tk_o, *tv_o;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &k_o, &o_o, &tk_o, &tv_o))
        return NULL;
    Views vs = {.n = 0};
    Py_ssize_t n, n2, nt, nt2;
    const int64_t *keys, *tkeys;
    int32_t *out;
    const int32_t *tvals;
    if (!(keys = view(&vs, k_o, "keys", AK_SIGNED, 8, &n, 0)) ||
        !(out = view(&vs, o_o, "out", AK_SIGNED, 4, &n2, 1)) ||
        !(tkeys = view(&vs, tk_o, "tkeys", AK_SIGNED, 8, &nt, 0)) ||
        !(tvals = view(&vs, tv_o, "tvals", AK_SIGNED, 4, &nt2, 0))) {
        release(&vs);
        return NULL;
    }
    if (n2 != n)
        return refuse(&vs, "lookup: keys and out differ in length");
    const char *bad = table_error(tkeys, tvals, nt, nt2, -1);
    if (bad != NULL)
        return refuse(&vs, bad);
    Py_ssize_t misses = 0;
    uint64_t mask = (uint64_t)nt - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t k = keys[i];
        if (k < 0) {
            out[i] = -1;
            continue;
        }
        uint64_t h = ((uint64_t)k * 0x9E3779B97F4A7C15ull) >> 20;
        for (;;) {
            int64_t t = tkeys[h & mask];
            if (t == k) {
                out[i] = tvals[h & mask];
                break;
            }
            if (t < 0) {
                out[i] = -2;
                misses++;
                break;
            }
            h++;
        }
    }
    release(&vs);
    return PyLong_FromSsize_t(misses);
}

static inline int32_t probe(const int64_t *tkeys, const int32_t *tvals, uint64_t mask, int64_t k)
{
    uint64_t h = ((uint64_t)k * 0x9E3779B97F4A7C15ull) >> 20;
    for (;;) {
        int64_t t = tkeys[h & mask];
        if (t == k)
            return tvals[h & mask];
        if (t < 0)
            return -2;
        h++;
    }
}

/* flags of packed rows (bits 32-39) */
enum { R_CHANGE = K_CHANGE, R_CONTINUE = K_CONTINUE, R_LOSS_BEGIN = 10, R_LOSS_END = 11 };
#define IDS_MASK 0xffffffffLL

static inline int is_marker(int flag) { return flag == R_LOSS_BEGIN || flag == R_LOSS_END; }

/* every row's flag and states must be ones the engine accepts */
static const char *rows_error(const int64_t *packed, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        int flag = (int)((packed[i] >> 32) & 0xff);
        int old = (int)((packed[i] >> 40) & 0xff), new = (int)((packed[i] >> 48) & 0xff);
        if (flag != R_CHANGE && flag != R_CONTINUE && !is_marker(flag))
            return "emit: a row has an unknown flag";
        if (!is_marker(flag) && (old > 4 || new > 4))
            return "emit: a row has an invalid state code";
    }
    return NULL;
}

/* emit(rows(time, packed), table(tkeys,tvals), seen, state, out(time,member,old,new))
 *   -> rows written, or -1 if some vCPU is not in the table yet (nothing changed).
 * packed: ids (dom << 16 | vcpu) in bits 0-31, flag in 32-39 (0 change,
 * 1 continue, 10/11 loss begin/end: a marker, whatever its ids), old 40-47,
 * new 48-55.  Markers are told by their flag, so every 32-bit id pair,
 * domain 65535 / vCPU 65535 included, is a vCPU's.
 * state[0]: loss depth, state[1]: last released time, state[2]: late rows.
 * Fuses member lookup, the late-row clamp and the continue filter: a continue
 * row is kept only as a member's first row since the trace start or since a
 * lost-data window began or ended, where its old state "running" (or the
 * member's mere presence) matters. */
static PyObject *py_emit(PyObject *self, PyObject *args)
{
    PyObject *rows, *table, *seen_o, *state_o, *outs;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &rows, &table, &seen_o, &state_o, &outs))
        return NULL;
    if (tuple_of(rows, 2, "rows") < 0 || tuple_of(table, 2, "table") < 0 ||
        tuple_of(outs, 4, "out") < 0)
        return NULL;
    Views vs = {.n = 0};
    Py_ssize_t n, n_packed, nt, nt2, n_seen, n_state, cap, c[3];
    const int64_t *time, *packed, *tkeys;
    const int32_t *tvals;
    uint8_t *seen;
    int64_t *st, *ot;
    int32_t *om;
    int8_t *oo, *on;
#define G(tup, i) PyTuple_GET_ITEM(tup, i)
    if (!(time = view(&vs, G(rows, 0), "time", AK_SIGNED, 8, &n, 0)) ||
        !(packed = view(&vs, G(rows, 1), "packed", AK_SIGNED, 8, &n_packed, 0)) ||
        !(tkeys = view(&vs, G(table, 0), "tkeys", AK_SIGNED, 8, &nt, 0)) ||
        !(tvals = view(&vs, G(table, 1), "tvals", AK_SIGNED, 4, &nt2, 0)) ||
        !(seen = view(&vs, seen_o, "seen", AK_UNSIGNED, 1, &n_seen, 1)) ||
        !(st = view(&vs, state_o, "state", AK_SIGNED, 8, &n_state, 1)) ||
        !(ot = view(&vs, G(outs, 0), "out_time", AK_SIGNED, 8, &cap, 1)) ||
        !(om = view(&vs, G(outs, 1), "out_member", AK_SIGNED, 4, &c[0], 1)) ||
        !(oo = view(&vs, G(outs, 2), "out_old", AK_SIGNED, 1, &c[1], 1)) ||
        !(on = view(&vs, G(outs, 3), "out_new", AK_SIGNED, 1, &c[2], 1))) {
        release(&vs);
        return NULL;
    }
#undef G
    if (n_packed != n)
        return refuse(&vs, "emit: time and packed differ in length");
    if (n_state != 3)
        return refuse(&vs, "emit: state must hold 3 values");
    if (cap < n || c[0] != cap || c[1] != cap || c[2] != cap)
        return refuse(&vs, "emit: output columns too short or of different lengths");
    const char *bad = table_error(tkeys, tvals, nt, nt2, n_seen);
    if (bad == NULL)
        bad = rows_error(packed, n);
    if (bad != NULL)
        return refuse(&vs, bad);
    uint64_t mask = (uint64_t)nt - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_marker((int)((packed[i] >> 32) & 0xff)) &&
            probe(tkeys, tvals, mask, packed[i] & IDS_MASK) < 0) {
            release(&vs);
            return PyLong_FromLong(-1);
        }
    }
    Py_ssize_t w = 0;
    int64_t depth = st[0], released = st[1], late = st[2];
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t t = time[i];
        int64_t p = packed[i];
        int flag = (int)((p >> 32) & 0xff);
        int8_t old = (int8_t)((p >> 40) & 0xff), new = (int8_t)((p >> 48) & 0xff);
        if (t < released) {
            late++;
            t = released;
        }
        released = t;
        if (is_marker(flag)) {
            /* a lost-data window starts or ends: members are to be seen afresh */
            if (flag == R_LOSS_BEGIN && depth++ == 0)
                memset(seen, 0, (size_t)n_seen);
            else if (flag == R_LOSS_END && depth > 0 && --depth == 0)
                memset(seen, 0, (size_t)n_seen);
            ot[w] = t; om[w] = -1; oo[w] = 0; on[w] = (int8_t)flag;
            w++;
            continue;
        }
        int32_t m = probe(tkeys, tvals, mask, p & IDS_MASK);
        int drop = flag == R_CONTINUE && seen[m];
        seen[m] = 1;
        if (drop)
            continue;
        ot[w] = t; om[w] = m; oo[w] = old; on[w] = new;
        w++;
    }
    st[0] = depth;
    st[1] = released;
    st[2] = late;
    release(&vs);
    return PyLong_FromSsize_t(w);
}

static PyMethodDef methods[] = {
    {"emit", py_emit, METH_VARARGS, "emit(rows, table, seen, state, out) -> rows or -1"},
    {"lookup", py_lookup, METH_VARARGS, "lookup(keys, out, tkeys, tvals) -> unknown keys"},
    {"decode", py_decode, METH_VARARGS,
     "decode(buf, base, limit, cursor, stats, pcpu_tsc, cols, flags) -> rows written"},
    {"index", py_index, METH_VARARGS,
     "index(buf, base, cursor, out_off, out_pcpu, out_first, flags) -> windows indexed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk", "xentrace record walker", -1, methods, NULL, NULL, NULL, NULL,
};

/* the layout Python shares with this walker (sources/xentrace/walk.py) */
static int add_constants(PyObject *mod)
{
    return ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
           ABI_CONST(mod, N_CURSOR) < 0 || ABI_CONST(mod, N_STATS) < 0 ||
           ABI_CONST(mod, MAX_PCPUS) < 0 || ABI_CONST(mod, MAX_WINDOW) < 0 ||
           ABI_CONST(mod, C_OFF) < 0 || ABI_CONST(mod, C_WEND) < 0 ||
           ABI_CONST(mod, C_PCPU) < 0 || ABI_CONST(mod, C_STATUS) < 0 ||
           ABI_CONST(mod, C_ERR_OFF) < 0 || ABI_CONST(mod, C_ERR_CODE) < 0 ||
           ABI_CONST(mod, C_ERR_WORD) < 0 || ABI_CONST(mod, C_ERR_AUX) < 0 ||
           ABI_CONST(mod, ST_FULL) < 0 || ABI_CONST(mod, ST_MORE) < 0 ||
           ABI_CONST(mod, ST_ERROR) < 0 || ABI_CONST(mod, K_CHANGE) < 0 ||
           ABI_CONST(mod, K_CONTINUE) < 0 || ABI_CONST(mod, K_LOST) < 0 ||
           ABI_CONST(mod, K_WRAP) < 0 || ABI_CONST(mod, K_OTHER) < 0 ||
           ABI_CONST(mod, F_LENIENT) < 0 || ABI_CONST(mod, F_OTHER_ROWS) < 0 ||
           ABI_CONST(mod, R_LOSS_BEGIN) < 0 || ABI_CONST(mod, R_LOSS_END) < 0 ||
           ABI_CONST(mod, S_WINDOWS) < 0 || ABI_CONST(mod, S_CHANGE) < 0 ||
           ABI_CONST(mod, S_CONTINUE) < 0 || ABI_CONST(mod, S_LOST) < 0 ||
           ABI_CONST(mod, S_LOST_COUNT) < 0 || ABI_CONST(mod, S_WRAP) < 0 ||
           ABI_CONST(mod, S_OTHER) < 0 || ABI_CONST(mod, S_BAD) < 0 ||
           ABI_CONST(mod, S_RESYNC) < 0 || ABI_CONST(mod, S_FIRST_TSC) < 0 ||
           ABI_CONST(mod, S_LAST_TSC) < 0 || ABI_CONST(mod, S_RECORDS) < 0 ||
           ABI_CONST(mod, S_ROUNDS) < 0 || ABI_CONST(mod, S_PREV_PCPU) < 0
               ? -1
               : 0;
}

PyMODINIT_FUNC PyInit__walk(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && add_constants(mod) < 0)
        Py_CLEAR(mod);
    return mod;
}
