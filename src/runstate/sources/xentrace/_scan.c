/*
 * Exact mode's first pass over a xentrace file: each vCPU's first record.
 *
 * Why C: the generic first pass decodes, merges and resolves every record
 * just to learn, per vCPU, the old state of its first record.  Here one walk
 * of the mapped file (walk_core.h decodes, exactly as for the generic path)
 * keeps only that: per vCPU the record with the smallest (TSC, byte offset),
 * which is the vCPU's first row in the merged order, so the order of these
 * records is also the order the generic path registers the vCPUs in.  Besides,
 * the walker's counters, each pcpu's last TSC and the first timestamp of its
 * first window (as _walk.index gives it), and where a cut final window stops.
 *
 * With two threads the file is walked in two halves at once, split at a
 * window header.  The second half cannot know what the first left behind
 * (each pcpu's last TSC): if it needed that, or the halves disagree at the
 * seam, the first walk simply goes on over the second half.  The result is
 * the one-walk result either way.
 *
 * Files that need the generic path (a lost record: loss windows; a record
 * skipped or a header resynced by --lenient; any error; no vCPU record) end
 * the walk with SCAN_GENERIC, and the generic path then reads them (and
 * reports their errors) as before.
 *
 * Scanner(flags); scanner.run(buf, release, threads) -> status (the GIL is
 * released; `release`: buf is a shared file mapping whose pages may be given
 * back behind the walk); scanner.result() -> what the walk learned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel_abi.h"
#include "walk_core.h"
#include "fastpath.h"

/* Scanner.run status */
enum { SCAN_MORE = 0, SCAN_DONE = 1, SCAN_GENERIC = 2 };
/* member state code of a continue-running record's old state */
enum { RUNNING = 0 };
/* summary slots */
enum { SUM_FIRST, SUM_LAST, SUM_LAST_CHANGE, SUM_ROWS, SUM_TRUNCATED, N_SUM };
/* below this many bytes a second thread costs more than it saves */
#define SPLIT_MIN_BYTES (4LL << 20)

/* a vCPU's first record so far */
typedef struct {
    int64_t key, time, off, old;
} First;

/* what a walk over part of the file learns */
typedef struct {
    int flags;
    int64_t cur[N_CURSOR];
    int64_t stats[N_STATS];
    int64_t pcpu_tsc[MAX_PCPUS];
    /* per pcpu: the first timestamp of its first window that has one, and how
     * many vCPU rows it carries */
    int64_t pcpu_first[MAX_PCPUS];
    int64_t pcpu_rows[MAX_PCPUS];
    int64_t sum[N_SUM];
    int64_t first_window_pcpu; /* -1: no window yet */
    Table table;
    First *firsts;
    int64_t cap;
} Scan;

static void scan_free(Scan *s)
{
    table_free(&s->table);
    free(s->firsts);
    s->firsts = NULL;
    s->cap = 0;
}

/* a walk from `start`; -1 out of memory */
static int scan_init(Scan *s, int flags, int64_t start)
{
    s->flags = flags;
    memset(s->cur, 0, sizeof s->cur);
    s->cur[C_OFF] = start;
    s->cur[C_WEND] = -1;
    memset(s->stats, 0, sizeof s->stats);
    s->stats[S_FIRST_TSC] = -1;
    s->stats[S_LAST_TSC] = -1;
    for (int p = 0; p < MAX_PCPUS; p++) {
        s->pcpu_tsc[p] = -1;
        s->pcpu_first[p] = -1;
        s->pcpu_rows[p] = 0;
    }
    s->sum[SUM_FIRST] = INT64_MAX;
    s->sum[SUM_LAST] = INT64_MIN;
    s->sum[SUM_LAST_CHANGE] = INT64_MIN;
    s->sum[SUM_ROWS] = 0;
    s->sum[SUM_TRUNCATED] = -1;
    s->first_window_pcpu = -1;
    s->firsts = NULL;
    s->cap = 0;
    return table_init(&s->table, 64);
}

/* vCPU `key`'s record at (time, off) with this old state, if it is the vCPU's
 * first so far; -1 out of memory.  Inlined into the walk: 8 % of its time. */
static inline __attribute__((always_inline)) int keep_first(Scan *s, int64_t key, int64_t time, int64_t off, int64_t old)
{
    int32_t m = table_find(&s->table, key);
    if (m < 0) {
        if (s->table.n == s->cap) {
            int64_t cap = s->cap ? 2 * s->cap : 64;
            First *grown = realloc(s->firsts, (size_t)cap * sizeof *grown);
            if (grown == NULL)
                return -1;
            s->firsts = grown;
            s->cap = cap;
        }
        if (table_add(&s->table, key) < 0)
            return -1;
        m = (int32_t)(s->table.n - 1);
        s->firsts[m] = (First){key, INT64_MAX, 0, 0};
    }
    /* a walk meets records in file order: a later one is first only if its
     * TSC is smaller */
    First *f = &s->firsts[m];
    if (time < f->time)
        *f = (First){key, time, off, old};
    return 0;
}

static int scan_row(Scan *s, const Row *r, int64_t pcpu)
{
    s->sum[SUM_ROWS] += 1;
    s->pcpu_rows[pcpu] += 1;
    if (r->tsc < s->sum[SUM_FIRST])
        s->sum[SUM_FIRST] = r->tsc;
    if (r->tsc > s->sum[SUM_LAST])
        s->sum[SUM_LAST] = r->tsc;
    if (r->kind == K_CHANGE && r->tsc > s->sum[SUM_LAST_CHANGE])
        s->sum[SUM_LAST_CHANGE] = r->tsc;
    return keep_first(s, r->key, r->tsc, r->off, r->kind == K_CHANGE ? r->old : RUNNING);
}

/* The walk of _walk.c's run() up to w->end, rows going to scan_row:
 * SCAN_MORE when w->end is before the end of the file (`len` bytes),
 * SCAN_DONE at the end of the file, SCAN_GENERIC if the file needs the
 * generic path, -1 out of memory. */
static int scan_walk(Scan *s, Walk *w, int64_t len)
{
    int r = 0;
    while (r == 0) {
        leave_window_if_done(w);
        if (w->wend < 0) {
            r = enter_window(w);
            if (r == 0 && s->first_window_pcpu < 0)
                s->first_window_pcpu = w->pcpu;
            if (r == 0 && s->pcpu_first[w->pcpu] < 0) {
                /* as _walk.index sees it: up to the end of the file, not of this step */
                int64_t wend = w->wend < len ? w->wend : len;
                s->pcpu_first[w->pcpu] = window_first_tsc(w->buf, 0, w->off, wend);
            }
        } else {
            Row row = {0, 0, 0, 0, 0, 0, 0}; /* set by record() when it returns REC_ROW */
            r = record(w, &row);
            if (r == REC_ROW) {
                if (row.kind == K_LOST)
                    return SCAN_GENERIC;
                if (scan_row(s, &row, w->pcpu) < 0)
                    return -1;
                r = 0;
            }
        }
        if (r < 0 || w->stats[S_BAD] || w->stats[S_RESYNC])
            return SCAN_GENERIC;
    }
    if (w->end < len)
        return SCAN_MORE;
    /* as walk.py's Walker: a record or header cut by the end of the file */
    if (w->off < w->end || w->wend > w->off)
        s->sum[SUM_TRUNCATED] = w->off;
    return s->sum[SUM_ROWS] ? SCAN_DONE : SCAN_GENERIC;
}

/* Walk on from s's cursor up to byte `limit`, giving mapped pages back behind
 * it every RELEASE_STEP bytes if `release`.  Status as scan_walk. */
static int scan_range(Scan *s, const uint8_t *buf, int64_t len, int64_t limit, int release,
                      int64_t *released)
{
    int status = SCAN_MORE;
    while (status == SCAN_MORE && s->cur[C_OFF] < limit) {
        int64_t from = s->cur[C_OFF];
        int64_t step = limit - from > RELEASE_STEP ? from + RELEASE_STEP : limit;
        Walk w = {.buf = buf, .base = 0, .end = step, .pcpu_tsc = s->pcpu_tsc,
                  .flags = s->flags};
        walk_load(&w, s->cur, s->stats);
        status = scan_walk(s, &w, len);
        walk_save(&w, s->cur, s->stats);
        if (release)
            release_mapped(buf, len, released, s->cur[C_OFF]);
        if (status == SCAN_MORE && step == limit && s->cur[C_OFF] == from)
            break; /* nothing whole left before the limit */
    }
    return status;
}

/* the window header at or after the middle of the file, found by walking
 * headers from the start; -1: none (or the headers need --lenient).  The
 * pages each header maps (with the kernel's fault-around, tens of kB) are
 * given back every RELEASE_STEP bytes, if `release`. */
static int64_t split_point(const uint8_t *buf, int64_t len, int release)
{
    Walk w = {.buf = buf, .base = 0, .end = len, .off = 0, .wend = -1, .pcpu_tsc = NULL,
              .flags = 0};
    int64_t released = 0;
    while (w.off < len / 2) {
        if (enter_window(&w) != 0 || w.wend > len)
            return -1;
        w.off = w.wend;
        w.wend = -1;
        if (release && w.off - released > RELEASE_STEP)
            release_mapped(buf, len, &released, w.off);
    }
    if (release)
        release_mapped(buf, len, &released, w.off);
    return len - w.off >= 12 ? w.off : -1;
}

/* what the walk of the whole file would say when `a` walked up to the split
 * and `b` from there to the end: 0, or -1 if the halves do not fit (a pcpu's
 * TSC going back at the seam) or memory runs out */
static int join(Scan *a, const Scan *b)
{
    for (int p = 0; p < MAX_PCPUS; p++)
        if (a->pcpu_tsc[p] >= 0 && b->pcpu_first[p] >= 0 && b->pcpu_first[p] < a->pcpu_tsc[p])
            return -1;
    static const int summed[] = {S_WINDOWS, S_CHANGE, S_CONTINUE, S_LOST, S_LOST_COUNT,
                                 S_WRAP, S_OTHER, S_BAD, S_RESYNC, S_RECORDS, S_ROUNDS};
    for (size_t i = 0; i < sizeof summed / sizeof summed[0]; i++)
        a->stats[summed[i]] += b->stats[summed[i]];
    if (a->stats[S_WINDOWS] > b->stats[S_WINDOWS] && b->first_window_pcpu >= 0 &&
        b->first_window_pcpu <= a->stats[S_PREV_PCPU])
        a->stats[S_ROUNDS] += 1; /* the round b's first window starts, seen from a */
    if (b->stats[S_WINDOWS])
        a->stats[S_PREV_PCPU] = b->stats[S_PREV_PCPU];
    if (b->stats[S_FIRST_TSC] >= 0 &&
        (a->stats[S_FIRST_TSC] < 0 || b->stats[S_FIRST_TSC] < a->stats[S_FIRST_TSC]))
        a->stats[S_FIRST_TSC] = b->stats[S_FIRST_TSC];
    if (b->stats[S_LAST_TSC] > a->stats[S_LAST_TSC])
        a->stats[S_LAST_TSC] = b->stats[S_LAST_TSC];
    for (int p = 0; p < MAX_PCPUS; p++) {
        if (b->pcpu_tsc[p] >= 0)
            a->pcpu_tsc[p] = b->pcpu_tsc[p];
        if (a->pcpu_first[p] < 0)
            a->pcpu_first[p] = b->pcpu_first[p];
        a->pcpu_rows[p] += b->pcpu_rows[p];
    }
    if (b->sum[SUM_FIRST] < a->sum[SUM_FIRST])
        a->sum[SUM_FIRST] = b->sum[SUM_FIRST];
    if (b->sum[SUM_LAST] > a->sum[SUM_LAST])
        a->sum[SUM_LAST] = b->sum[SUM_LAST];
    if (b->sum[SUM_LAST_CHANGE] > a->sum[SUM_LAST_CHANGE])
        a->sum[SUM_LAST_CHANGE] = b->sum[SUM_LAST_CHANGE];
    a->sum[SUM_ROWS] += b->sum[SUM_ROWS];
    a->sum[SUM_TRUNCATED] = b->sum[SUM_TRUNCATED];
    memcpy(a->cur, b->cur, sizeof a->cur);
    for (int64_t m = 0; m < b->table.n; m++) {
        const First *f = &b->firsts[m];
        if (keep_first(a, f->key, f->time, f->off, f->old) < 0)
            return -1;
    }
    return 0;
}

typedef struct {
    Scan *scan;
    const uint8_t *buf;
    int64_t len;
    int release;
    int status;
} Half;

static void *walk_second_half(void *arg)
{
    Half *h = arg;
    int64_t page = (int64_t)sysconf(_SC_PAGESIZE);
    int64_t released = page > 0 ? (h->scan->cur[C_OFF] + page - 1) / page * page : h->len;
    h->status = scan_range(h->scan, h->buf, h->len, h->len, h->release, &released);
    return NULL;
}

/* the whole walk into `a` (at the start of the file), in two halves at once
 * if `threads` > 1: status as scan_walk */
static int scan_file(Scan *a, const uint8_t *buf, int64_t len, int release, int threads)
{
    int64_t released = 0;
    int64_t mid = threads > 1 && len >= SPLIT_MIN_BYTES ? split_point(buf, len, release) : -1;
    Scan *b = mid > 0 ? malloc(sizeof *b) : NULL;
    pthread_t thread;
    Half half = {.scan = b, .buf = buf, .len = len, .release = release, .status = -1};
    if (b != NULL && scan_init(b, a->flags, mid) < 0) {
        scan_free(b);
        free(b);
        b = NULL;
    }
    if (b != NULL && pthread_create(&thread, NULL, walk_second_half, &half) != 0) {
        scan_free(b);
        free(b);
        b = NULL;
    }
    int status = scan_range(a, buf, len, b != NULL ? mid : len, release, &released);
    if (b != NULL) {
        pthread_join(thread, NULL);
        int joined = status == SCAN_MORE && a->cur[C_OFF] == mid && a->cur[C_WEND] < 0 &&
                     half.status == SCAN_DONE && join(a, b) == 0;
        if (joined)
            status = SCAN_DONE;
        else if (status == SCAN_MORE)
            status = scan_range(a, buf, len, len, release, &released);
        scan_free(b);
        free(b);
    }
    return status;
}

/* ---- Python type --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Scan scan;
    int ready; /* initialised, not yet run */
    int busy;  /* walking with the GIL released: the object must not change */
} Scanner;

static int scanner_init(Scanner *self, PyObject *args, PyObject *kw)
{
    int flags;
    if (kw != NULL && PyDict_GET_SIZE(kw) != 0) {
        PyErr_SetString(PyExc_TypeError, "Scanner takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "i", &flags))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_ValueError, "Scanner is busy");
        return -1;
    }
    scan_free(&self->scan);
    /* no rows of other records here: only --lenient matters */
    if (scan_init(&self->scan, flags & F_LENIENT, 0) < 0) {
        self->ready = 0;
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    return 0;
}

static void scanner_dealloc(Scanner *self)
{
    scan_free(&self->scan);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *scanner_run(Scanner *self, PyObject *args)
{
    PyObject *buf_o;
    int release, threads;
    if (!PyArg_ParseTuple(args, "Opi", &buf_o, &release, &threads))
        return NULL;
    if (!self->ready || self->busy) {
        PyErr_SetString(PyExc_ValueError, "Scanner: not initialised, busy or run already");
        return NULL;
    }
    Py_buffer view;
    Py_ssize_t len;
    const uint8_t *buf = abi_view(&view, buf_o, "buf", AK_BYTES, 1, 0, &len);
    if (buf == NULL)
        return NULL;
    int status;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = scan_file(&self->scan, buf, len, release, threads);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    self->ready = 0;
    PyBuffer_Release(&view);
    if (status < 0)
        return PyErr_NoMemory();
    return PyLong_FromLong(status);
}

static PyObject *int64_bytes(const int64_t *a, int64_t n)
{
    return PyBytes_FromStringAndSize((const char *)a, (Py_ssize_t)(n * (int64_t)sizeof *a));
}

static PyObject *scanner_result(Scanner *self, PyObject *noargs)
{
    (void)noargs;
    const Scan *s = &self->scan;
    if (self->busy || s->table.keys == NULL) {
        PyErr_SetString(PyExc_ValueError, "Scanner has no result");
        return NULL;
    }
    return Py_BuildValue("(NNNNNN)", int64_bytes(s->stats, N_STATS),
                         int64_bytes(s->pcpu_tsc, MAX_PCPUS),
                         int64_bytes(s->pcpu_first, MAX_PCPUS),
                         int64_bytes(s->pcpu_rows, MAX_PCPUS), int64_bytes(s->sum, N_SUM),
                         int64_bytes(s->firsts ? &s->firsts[0].key : NULL, 4 * s->table.n));
}

static PyMethodDef scanner_methods[] = {
    {"run", (PyCFunction)scanner_run, METH_VARARGS,
     "run(buf, release, threads) -> status: the walk over the whole file"},
    {"result", (PyCFunction)scanner_result, METH_NOARGS,
     "result() -> (stats, pcpu_tsc, pcpu_first, pcpu_rows, summary, firsts) as int64 bytes; "
     "firsts: per vCPU (key, TSC, byte offset, old state) of its first record"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runstate.sources.xentrace._scan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Exact mode's first pass over a xentrace file: each vCPU's first record.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)scanner_init,
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_methods = scanner_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan", "exact mode's first pass over a xentrace file", -1, NULL,
    NULL, NULL, NULL, NULL,
};

static int add_constants(PyObject *mod)
{
    return ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
           ABI_CONST(mod, SCAN_MORE) < 0 || ABI_CONST(mod, SCAN_DONE) < 0 ||
           ABI_CONST(mod, SCAN_GENERIC) < 0 || ABI_CONST(mod, MAX_PCPUS) < 0 ||
           ABI_CONST(mod, N_STATS) < 0 || ABI_CONST(mod, SUM_FIRST) < 0 ||
           ABI_CONST(mod, SUM_LAST) < 0 || ABI_CONST(mod, SUM_LAST_CHANGE) < 0 ||
           ABI_CONST(mod, SUM_ROWS) < 0 || ABI_CONST(mod, SUM_TRUNCATED) < 0 ||
           ABI_CONST(mod, N_SUM) < 0 || ABI_CONST(mod, F_LENIENT) < 0
               ? -1
               : 0;
}

PyMODINIT_FUNC PyInit__scan(void)
{
    if (PyType_Ready(&ScannerType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL)
        return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(mod, "Scanner", (PyObject *)&ScannerType) < 0 ||
        add_constants(mod) < 0)
        Py_CLEAR(mod);
    return mod;
}
