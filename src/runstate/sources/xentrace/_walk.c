/*
 * Walking xentrace files: windows and variable-length records -> columns.
 *
 * Why C: a record's length is only known from its header word, so finding the
 * next record is inherently sequential; a 40 MB trace has millions of records
 * and a Python loop over them takes seconds.  This file only walks and decodes;
 * merging the per-pcpu streams, member indices and all semantics live in
 * Python (reader.py), on the columns written here.
 *
 * Layout (docs/xentrace.md): the file is a sequence of windows, each a
 * 12-byte TRC_TRACE_CPU_CHANGE record (header word 0x2001f003, pcpu, size)
 * followed by `size` bytes of that pcpu's records.  A record is a header word
 * (event id bits 0-27, extra word count bits 28-30, TSC flag bit 31), an
 * optional 64-bit TSC and 0-7 extra words.  Little-endian.
 *
 * The walker is resumable: all position state lives in the caller's `cursor`
 * array, so it can stop when the output is full or the buffer ends (stdin)
 * and continue later from exactly the same place.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "xentrace_format.h"
#include "../../kernel_abi.h"

/* cursor slots */
enum { C_OFF, C_WEND, C_PCPU, C_STATUS, C_ERR_OFF, C_ERR_CODE, C_ERR_WORD, C_ERR_AUX, N_CURSOR };
/* status */
enum { ST_FULL = 0, ST_MORE = 1, ST_ERROR = 2 };
/* error codes (mirrored in walk.py) */
enum {
    E_NONE, E_HEADER, E_PCPU, E_WSIZE, E_CLASS, E_OVERRUN, E_LOST_TSC, E_STATE,
    E_BACKWARDS, E_LOST_SIZE, E_RS_SIZE
};
/* row kinds */
enum { K_CHANGE, K_CONTINUE, K_LOST, K_WRAP, K_OTHER };
/* stats slots */
enum {
    S_WINDOWS, S_CHANGE, S_CONTINUE, S_LOST, S_LOST_COUNT, S_WRAP, S_OTHER, S_BAD,
    S_RESYNC, S_FIRST_TSC, S_LAST_TSC, S_RECORDS, S_ROUNDS, S_PREV_PCPU, N_STATS
};
/* flags */
enum { F_LENIENT = 1, F_OTHER_ROWS = 2 };

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v; /* little-endian hosts only (x86, arm) */
}

static inline int64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return (int64_t)v;
}

static int header_ok(const uint8_t *p)
{
    int32_t pcpu = (int32_t)rd32(p + 4);
    uint32_t size = rd32(p + 8);
    return rd32(p) == CPU_CHANGE_HEADER && pcpu >= 0 && pcpu < MAX_PCPUS && size % 4 == 0 &&
           (int64_t)size <= MAX_WINDOW;
}

typedef struct {
    const uint8_t *buf;
    int64_t base, end; /* absolute offsets covered by buf */
    int64_t *cur;
    int64_t *stats;
    int64_t *pcpu_tsc;
    int flags;
} Walk;

static int fail(Walk *w, int64_t off, int code, int64_t word, int64_t aux)
{
    w->cur[C_STATUS] = ST_ERROR;
    w->cur[C_ERR_OFF] = off;
    w->cur[C_ERR_CODE] = code;
    w->cur[C_ERR_WORD] = word;
    w->cur[C_ERR_AUX] = aux;
    return -1;
}

/* at a window header: 0 = entered the window, 1 = need more data, -1 = error */
static int enter_window(Walk *w)
{
    int64_t off = w->cur[C_OFF];
    if (w->end - off < 12)
        return 1;
    const uint8_t *p = w->buf + (off - w->base);
    uint32_t hdr = rd32(p);
    int32_t pcpu = (int32_t)rd32(p + 4);
    uint32_t size = rd32(p + 8);
    int code = hdr != CPU_CHANGE_HEADER ? E_HEADER
               : (pcpu < 0 || pcpu >= MAX_PCPUS) ? E_PCPU
               : (size % 4 != 0 || (int64_t)size > MAX_WINDOW) ? E_WSIZE
               : E_NONE;
    if (code != E_NONE) {
        if (!(w->flags & F_LENIENT))
            return fail(w, off, code, hdr, code == E_PCPU ? pcpu : (int64_t)size);
        /* lenient: look for the next plausible window header */
        int64_t q = off + 4;
        while (w->end - q >= 12 && !header_ok(w->buf + (q - w->base)))
            q += 4;
        w->stats[S_RESYNC] += 1;
        w->cur[C_OFF] = q;
        return w->end - q >= 12 ? enter_window(w) : 1;
    }
    w->cur[C_OFF] = off + 12;
    w->cur[C_WEND] = off + 12 + (int64_t)size;
    w->cur[C_PCPU] = pcpu;
    w->stats[S_WINDOWS] += 1;
    /* xentrace writes pcpus in increasing order each polling round */
    if (w->stats[S_WINDOWS] > 1 && pcpu <= w->stats[S_PREV_PCPU])
        w->stats[S_ROUNDS] += 1;
    w->stats[S_PREV_PCPU] = pcpu;
    return 0;
}

typedef struct {
    int64_t *tsc, *key, *aux, *off;
    int8_t *kind, *old, *new;
    int16_t *pcpu;
    Py_ssize_t n, cap;
} Out;

static void emit(Out *o, int64_t tsc, int64_t key, int kind, int old, int new, int64_t aux,
                 int pcpu, int64_t off)
{
    Py_ssize_t i = o->n++;
    o->tsc[i] = tsc;
    /* packed: ids in bits 0-31, kind 32-39, old 40-47, new 48-55 (see walk.py) */
    o->key[i] = (key & 0xffffffffLL) | (int64_t)kind << 32 | (int64_t)old << 40 |
                (int64_t)new << 48;
    o->kind[i] = (int8_t)kind;
    o->old[i] = (int8_t)old;
    o->new[i] = (int8_t)new;
    o->aux[i] = aux;
    o->pcpu[i] = (int16_t)pcpu;
    o->off[i] = off;
}

/* Decode one record at cursor (inside a window).  0 = ok, 1 = need more, -1 = error */
static int record(Walk *w, Out *o)
{
    int64_t off = w->cur[C_OFF];
    int64_t wend = w->cur[C_WEND];
    int lenient = w->flags & F_LENIENT;
    if (w->end - off < 4)
        return 1;
    const uint8_t *p = w->buf + (off - w->base);
    uint32_t hdr = rd32(p);
    int has_tsc = (int)(hdr >> 31);
    int n_extra = (int)((hdr >> 28) & 7);
    int64_t size = 4 + 8 * has_tsc + 4 * n_extra;
    if (off + size > wend) {
        if (!lenient)
            return fail(w, off, E_OVERRUN, hdr, wend - off);
        w->stats[S_BAD] += 1;
        w->cur[C_OFF] = wend; /* skip the rest of the window */
        return 0;
    }
    if (w->end - off < size)
        return 1;
    uint32_t event = hdr & EVENT_MASK;
    uint32_t cls = (event >> 16) & 0xfff;
    int pcpu = (int)w->cur[C_PCPU];
    int64_t *last = w->pcpu_tsc + pcpu;
    int64_t tsc = *last;
    const uint8_t *x = p + 4 + 8 * has_tsc;
    w->cur[C_OFF] = off + size;
    w->stats[S_RECORDS] += 1;
    if (cls == 0 || (cls & (cls - 1)) != 0) {
        if (!lenient)
            return fail(w, off, E_CLASS, hdr, 0);
        w->stats[S_BAD] += 1;
        return 0;
    }
    if (has_tsc) {
        tsc = rd64(p + 4);
        if (*last >= 0 && tsc < *last) {
            if (!lenient) {
                w->cur[C_OFF] = off;
                return fail(w, off, E_BACKWARDS, hdr, *last);
            }
            w->stats[S_BAD] += 1;
            tsc = *last;
        }
        *last = tsc;
        if (w->stats[S_FIRST_TSC] < 0 || tsc < w->stats[S_FIRST_TSC])
            w->stats[S_FIRST_TSC] = tsc;
        if (tsc > w->stats[S_LAST_TSC])
            w->stats[S_LAST_TSC] = tsc;
    }
    if ((event & RUNSTATE_MASK) == RUNSTATE_CHANGE || event == CONTINUE_RUNNING) {
        int old = 0, new = 0, kind = K_CONTINUE;
        if (event != CONTINUE_RUNNING) {
            old = (int)((event >> 8) & 0xf);
            new = (int)((event >> 4) & 0xf);
            kind = K_CHANGE;
        }
        int code = n_extra < 1 ? E_RS_SIZE : (old > 3 || new > 3) ? E_STATE : E_NONE;
        if (code == E_NONE && tsc < 0)
            code = E_RS_SIZE;
        if (code != E_NONE) {
            if (!lenient)
                return fail(w, off, code, hdr, 0);
            w->stats[S_BAD] += 1;
            return 0;
        }
        uint32_t ids = rd32(x);
        w->stats[kind == K_CHANGE ? S_CHANGE : S_CONTINUE] += 1;
        emit(o, tsc, (int64_t)(ids >> 16) << 16 | (ids & 0xffff), kind, old, new, 0, pcpu, off);
        return 0;
    }
    if (event == LOST_RECORDS) {
        if (n_extra != 4 || !has_tsc) {
            if (!lenient)
                return fail(w, off, E_LOST_SIZE, hdr, 0);
            w->stats[S_BAD] += 1;
            return 0;
        }
        uint32_t ids = rd32(x + 4); /* domain in the low half, vcpu in the high half */
        int64_t first = (int64_t)((uint64_t)rd32(x + 8) | (uint64_t)rd32(x + 12) << 32);
        if (tsc <= first) {
            if (!lenient)
                return fail(w, off, E_LOST_TSC, tsc, first);
            w->stats[S_BAD] += 1;
            return 0;
        }
        w->stats[S_LOST] += 1;
        w->stats[S_LOST_COUNT] += rd32(x);
        emit(o, tsc, (int64_t)(ids & 0xffff) << 16 | (ids >> 16), K_LOST, 0, 0, first, pcpu, off);
        return 0;
    }
    if (event == WRAP_BUFFER) {
        w->stats[S_WRAP] += 1;
        if (has_tsc && (w->flags & F_OTHER_ROWS))
            emit(o, tsc, 0, K_WRAP, 0, 0, 0, pcpu, off);
        return 0;
    }
    w->stats[S_OTHER] += 1;
    if ((w->flags & F_OTHER_ROWS) && tsc >= 0)
        emit(o, tsc, (int64_t)event, K_OTHER, 0, 0, 0, pcpu, off);
    return 0;
}

static void run(Walk *w, Out *o)
{
    w->cur[C_STATUS] = ST_MORE;
    while (o->n < o->cap) {
        if (w->cur[C_WEND] >= 0 && w->cur[C_OFF] >= w->cur[C_WEND])
            w->cur[C_WEND] = -1;
        int r = w->cur[C_WEND] < 0 ? enter_window(w) : record(w, o);
        if (r != 0)
            return; /* status already set (MORE or ERROR) */
    }
    w->cur[C_STATUS] = ST_FULL;
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
    if (!(buf = view(&vs, buf_o, "buf", AK_BYTES, 1, &blen, 0)) ||
        !(w.cur = view(&vs, cur_o, "cursor", AK_SIGNED, 8, &nc, 1)) ||
        !(w.stats = view(&vs, stats_o, "stats", AK_SIGNED, 8, &ns, 1)) ||
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
    const char *bad = cursor_error(w.cur, base, w.end);
    if (bad != NULL)
        return refuse(&vs, bad);
    Py_BEGIN_ALLOW_THREADS
    run(&w, &o);
    Py_END_ALLOW_THREADS
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
    Walk w = {.buf = buf, .base = base, .end = base + blen, .cur = cur,
              .stats = stats, .pcpu_tsc = NULL, .flags = flags};
    Py_ssize_t n = 0;
    cur[C_STATUS] = ST_MORE;
    while (n < cap) {
        int r = enter_window(&w);
        if (r != 0)
            break;
        int64_t first = -1;
        int64_t q = cur[C_OFF];
        int64_t wend = cur[C_WEND] < w.end ? cur[C_WEND] : w.end;
        while (wend - q >= 4) {
            const uint8_t *p = w.buf + (q - base);
            uint32_t hdr = rd32(p);
            int64_t size = 4 + 8 * (hdr >> 31) + 4 * ((hdr >> 28) & 7);
            if (q + size > wend)
                break;
            if (hdr >> 31) {
                first = rd64(p + 4);
                if ((hdr & EVENT_MASK) == LOST_RECORDS && size == 28) {
                    int64_t lf = (int64_t)((uint64_t)rd32(p + 20) | (uint64_t)rd32(p + 24) << 32);
                    if (lf < first)
                        first = lf;
                }
                break;
            }
            q += size;
        }
        ooff[n] = cur[C_WEND] < w.end ? cur[C_WEND] : w.end; /* where the window ends */
        opcpu[n] = (int32_t)cur[C_PCPU];
        ofirst[n] = first;
        n++;
        cur[C_OFF] = cur[C_WEND] < w.end ? cur[C_WEND] : w.end;
        cur[C_WEND] = -1;
    }
    if (n == cap)
        cur[C_STATUS] = ST_FULL;
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
