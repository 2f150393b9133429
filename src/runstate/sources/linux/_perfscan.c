/* The perf.data hot path: one pass over the data section, in C.
 *
 * Scanner(fd, data_offset, data_size, layout, kinds, ids, flags) maps the data
 * section 8 MiB at a time (never the whole file; it keeps a duplicate of fd),
 * walks its records, pulls the sched tracepoint fields at the offsets the
 * recorded formats give (worked out once in Python and passed in `kinds`), and
 * orders the events under perf's FINISHED_ROUND rule: at each round's end the
 * held events up to the largest time seen when the previous round ended are
 * released, in time order, ties in file order.  LOST and LOST_SAMPLES records
 * become losses released with the events (a timed loss begins after its CPU's
 * last released event); COMM and FORK records are handed to Python as they
 * are (side_band()); each tid's comm from its first switch (names()) and the
 * tids of released events (active()) are collected on the way.
 *
 * read(columns, chunk_rows) fills the seven event columns (time i64, cpu i32, kind i8,
 * pid i32, other i32, prev_state i64, actor i32) with released events and returns
 * (count, why): STOP_CHUNK at a round's end once chunk_rows events have been given since
 * the last stop, STOP_LOSS before a loss (take_loss() gives it), STOP_FULL when the
 * columns are full, STOP_END when the data is done, STOP_ERROR with status()["error"]
 * set to (code, byte offset, count, kind).  It lets go of the GIL while it reads (one
 * read at a time per Scanner).  Everything read from the file is bounds-checked against
 * the record it belongs to and the data section.
 *
 * layout: (time, cpu, id, before_callchain, callchain, trailer_time,
 *          trailer_cpu, multi)  -- byte offsets in a sample body; the trailer
 *          fields count back from a record's end (0: absent)
 * kinds:  per sched tracepoint (id, kind, need, bad, then offset, size,
 *          signed of pid, other, prev_state, actor, then offset, size of the
 *          two comm fields) -- offset -1: absent
 * ids:    sorted int64 sample ids of the sched tracepoints (used with multi)
 * flags:  (truncated, lenient, n_streams or -1)
 *
 * start(capacity, chunk_rows, guess) runs the same pass on a thread of its own into
 * columns the Scanner makes (perfscan_pass.h); wait() joins it and returns (events,
 * overflow), items() lists its chunks and losses, columns() gives its seven columns
 * (Blocks, perfscan_block.h: numpy reads them in place).  A pass started so needs neither
 * numpy nor the GIL, so it can begin before numpy is imported.
 *
 * The walk itself is in perfscan_records.h, the round order in perfscan_order.h.
 */
#include "perfscan_block.h"
#include "perfscan_pass.h"

#include "../../kernel_abi.h"

/* ---- Python interface ------------------------------------------------------ */

/* a Scanner made without __init__ (Scanner.__new__) has nothing to read with */
static int ready(const Scanner *s)
{
    if (s->initialized)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "Scanner not initialized");
    return 0;
}

static PyObject *stop(Py_ssize_t n, int why)
{
    return Py_BuildValue("ni", n, why);
}

/* the exception for a pass that ran out of memory or could not read the file */
static PyObject *pending_error(const Scanner *s)
{
    if (s->os_errno) {
        errno = s->os_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyErr_NoMemory();
}

static PyObject *scanner_read(Scanner *s, PyObject *args)
{
    PyObject *cols;
    Py_ssize_t chunk_rows;
    if (!ready(s) || !PyArg_ParseTuple(args, "O!n", &PyTuple_Type, &cols, &chunk_rows))
        return NULL;
    if (PyTuple_GET_SIZE(cols) != 7) {
        PyErr_SetString(PyExc_ValueError, "seven event columns expected");
        return NULL;
    }
    if (s->err_code)
        return stop(0, STOP_ERROR);
    Py_buffer views[7];
    void *col[7];
    Py_ssize_t cap = -1;
    int nv = 0;
    PyObject *result = NULL;
    for (; nv < 7; nv++) {
        Py_ssize_t count;
        col[nv] = abi_view(&views[nv], PyTuple_GET_ITEM(cols, nv), "column", AK_SIGNED,
                           COLUMN_SIZE[nv], 1, &count);
        if (col[nv] == NULL)
            goto done;
        if (cap >= 0 && count != cap) {
            PyErr_SetString(PyExc_ValueError, "event columns differ in length");
            nv++;
            goto done;
        }
        cap = count;
    }
    if (s->pass_started || s->reading) {
        PyErr_SetString(PyExc_RuntimeError, "a Scanner runs one pass at a time");
        goto done;
    }
    Py_ssize_t n;
    int why;
    /* the walk needs no Python: a thread reading ahead runs beside the caller's */
    s->reading = 1;
    Py_BEGIN_ALLOW_THREADS
    why = fill(s, col, cap, chunk_rows, &n);
    Py_END_ALLOW_THREADS
    s->reading = 0;
    result = why == -2 ? pending_error(s) : stop(n, why);
done:
    for (int i = 0; i < nv; i++)
        PyBuffer_Release(&views[i]);
    return result;
}

static PyObject *loss_tuple(const Loss *l)
{
    if (!l->has_count)
        return Py_BuildValue("LLLO", (long long)l->cpu, (long long)l->begin,
                             (long long)l->end, Py_None);
    return Py_BuildValue("LLLL", (long long)l->cpu, (long long)l->begin, (long long)l->end,
                         (long long)l->count);
}

static PyObject *scanner_take_loss(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    settle(s);
    return loss_tuple(&s->taken);
}

static PyObject *scanner_side_band(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    if (!ready(s))
        return NULL;
    settle(s);
    PyObject *out = PyList_New(s->side.n);
    for (Py_ssize_t i = 0; out != NULL && i < s->side.n; i++) {
        const Side *r = (const Side *)s->side.v + i;
        PyObject *item = Py_BuildValue("LIy#", (long long)r->pos, (unsigned)r->type,
                                       (const char *)s->side_bytes.v + r->off,
                                       (Py_ssize_t)r->size);
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, item);
    }
    if (out != NULL)
        s->side.n = s->side_bytes.n = 0;
    return out;
}

static PyObject *scanner_names(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    settle(s);
    PyObject *out = PyList_New(s->names.n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < s->names.n; i++) {
        const Name *nm = (const Name *)s->names.v + i;
        PyObject *item = Py_BuildValue("iiy#", nm->key, nm->pid, nm->comm, (Py_ssize_t)nm->len);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *scanner_active(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    if (!ready(s))
        return NULL;
    settle(s);
    PyObject *out = PyList_New(0);
    for (int32_t byte = 0; out != NULL && byte < PID_LIMIT / 8; byte++) {
        for (int bit = 0; s->active[byte] >> bit; bit++) {
            if (!(s->active[byte] >> bit & 1))
                continue;
            PyObject *tid = PyLong_FromLong(8L * byte + bit);
            if (tid == NULL || PyList_Append(out, tid) < 0)
                Py_CLEAR(out);
            Py_XDECREF(tid);
            if (out == NULL)
                break;
        }
    }
    return out;
}

static PyObject *scanner_status(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    settle(s);
    int64_t until = 0;
    int have = complete_until(s, &until);
    PyObject *u = have ? PyLong_FromLongLong(until) : Py_NewRef(Py_None);
    if (u == NULL)
        return NULL;
    return Py_BuildValue("{s:N,s:L,s:L,s:L,s:L,s:(iLLi)}", "complete_until", u,
                         "dropped", (long long)s->dropped, "untimed", (long long)s->untimed,
                         "malformed", (long long)s->malformed, "tail_bytes",
                         (long long)s->tail_bytes, "error", s->err_code,
                         (long long)s->err_off, (long long)s->err_n, s->err_kind);
}

/* whether (and how) a kind's fields can all be read as 8 bytes within its data */
static void plan_wide(Kind *k)
{
    static const int64_t absent[4] = {-1, -1, 0, -1};
    k->wide = !k->bad && k->need >= 8;
    for (int f = 0; f < 4; f++) {
        const Fld *d = &k->f[f];
        Wide *w = &k->w[f];
        w->present = d->off >= 0;
        w->at = w->present ? d->off : 0;
        w->shift = w->present ? 64 - 8 * d->size : 0;
        w->sign = d->sign || d->size == 8;
        w->absent = absent[f];
        if (w->present && d->off + 8 > k->need)
            k->wide = 0;
    }
}

static int parse_kinds(Scanner *s, PyObject *kinds)
{
    Py_ssize_t n = PyTuple_GET_SIZE(kinds);
    if (n > MAX_KINDS) {
        PyErr_SetString(PyExc_ValueError, "too many tracepoint kinds");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Kind *k = &s->kinds[i];
        long long id;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(kinds, i), "Liii(iii)(iii)(iii)(iii)(ii)(ii)",
                              &id, &k->kind, &k->need, &k->bad, &k->f[0].off, &k->f[0].size,
                              &k->f[0].sign, &k->f[1].off, &k->f[1].size, &k->f[1].sign,
                              &k->f[2].off, &k->f[2].size, &k->f[2].sign, &k->f[3].off,
                              &k->f[3].size, &k->f[3].sign, &k->comm[0].off, &k->comm[0].size,
                              &k->comm[1].off, &k->comm[1].size))
            return -1;
        k->id = id;
        for (int f = 0; f < 4; f++) {
            Fld *d = &k->f[f];
            int sz = d->size;
            if (d->off >= 0 && (d->off + sz > k->need || (sz != 1 && sz != 2 && sz != 4 &&
                                                          sz != 8)) && !k->bad) {
                PyErr_SetString(PyExc_ValueError, "field outside the tracepoint's data");
                return -1;
            }
        }
        for (int f = 0; f < 2; f++) {
            Fld *d = &k->comm[f];
            if (d->off >= 0 && (d->size < 0 || d->size > COMM_MAX || d->off + d->size > k->need)) {
                PyErr_SetString(PyExc_ValueError, "comm field outside the tracepoint's data");
                return -1;
            }
        }
        if (k->need < 2) {
            PyErr_SetString(PyExc_ValueError, "a tracepoint's data holds at least its id");
            return -1;
        }
    }
    s->n_kinds = (int)n;
    for (int i = 0; i < (int)n; i++)
        plan_wide(&s->kinds[i]);
    for (int i = (int)n - 1; i >= 0; i--) /* the first of equal ids wins */
        if (s->kinds[i].id >= 0 && s->kinds[i].id <= 0xffff)
            s->kind_index[s->kinds[i].id] = (uint8_t)(i + 1);
    return 0;
}

/* the sched sample ids in a hash table (see wanted_id) */
static int hash_ids(Scanner *s, const int64_t *ids, Py_ssize_t n)
{
    int bits = 4;
    while (bits < 40 && ((Py_ssize_t)1 << bits) < 2 * n)
        bits++;
    Py_ssize_t size = (Py_ssize_t)1 << bits;
    s->id_slots = PyMem_Malloc((size_t)size * sizeof(int64_t));
    s->id_used = PyMem_Calloc((size_t)size, 1);
    if (s->id_slots == NULL || s->id_used == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->id_bits = bits;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (wanted_id(s, ids[i]))
            continue;
        uint64_t h = ((uint64_t)ids[i] * 0x9E3779B97F4A7C15ull) >> (64 - bits);
        while (s->id_used[h])
            h = (h + 1) & (uint64_t)(size - 1);
        s->id_used[h] = 1;
        s->id_slots[h] = ids[i];
    }
    return 0;
}

static int scanner_init(Scanner *s, PyObject *args, PyObject *kw)
{
    int fd;
    long long off, size, lt, lc, lid, lbc, tat, cat, nstreams;
    int cc, multi, trunc, lenient;
    PyObject *kinds, *ids;
    (void)kw;
    if (s->init_called) {
        PyErr_SetString(PyExc_RuntimeError, "a Scanner is initialized once");
        return -1;
    }
    s->init_called = 1;
    s->fd = -1;
    if (!PyArg_ParseTuple(args, "iLL(LLLLiLLi)O!O(iiL)", &fd, &off, &size, &lt, &lc, &lid,
                          &lbc, &cc, &tat, &cat, &multi, &PyTuple_Type, &kinds, &ids, &trunc,
                          &lenient, &nstreams))
        return -1;
    if (off < 0 || size < 0 || lt < 0 || lc < 0 || lbc < lt + 8 || lbc < lc + 4 ||
        lid + 8 > lbc || lbc > 4096 || tat < 0 || cat < 0 || tat > 4096 || cat > 4096) {
        PyErr_SetString(PyExc_ValueError, "bad sample layout");
        return -1;
    }
    s->fd = dup(fd); /* its own: the caller may close theirs */
    if (s->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    s->data_off = s->pos = off;
    s->data_end = off + size;
    s->l_time = lt;
    s->l_cpu = lc;
    s->l_id = lid;
    s->l_bc = lbc;
    s->callchain = cc;
    s->t_at = tat;
    s->cpu_at = cat;
    s->multi = multi;
    s->truncated = trunc;
    s->lenient = lenient;
    s->n_streams = nstreams;
    if (parse_kinds(s, kinds) < 0)
        return -1;
    Py_buffer b;
    Py_ssize_t n_ids;
    int64_t *p = abi_view(&b, ids, "ids", AK_SIGNED, 8, 0, &n_ids);
    if (p == NULL)
        return -1;
    int rc = hash_ids(s, p, n_ids);
    PyBuffer_Release(&b);
    if (rc < 0)
        return -1;
    s->active = PyMem_Calloc(PID_LIMIT / 8, 1);
    s->name_slot = PyMem_Calloc(PID_LIMIT, sizeof(int32_t));
    if (s->active == NULL || s->name_slot == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    s->initialized = 1;
    return 0;
}

static void scanner_dealloc(Scanner *s)
{
    if (s->pass_running) {
        __atomic_store_n(&s->cancel, 1, __ATOMIC_RELAXED);
        settle(s);
    }
    unmap(s);
    if (s->init_called && s->fd >= 0)
        close(s->fd);
    PyMem_Free(s->id_slots);
    PyMem_Free(s->id_used);
    Vec *vecs[] = {&s->held, &s->tmp, &s->runs, &s->pending, &s->marks, &s->names, &s->side,
                   &s->side_bytes, &s->items};
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
        PyMem_RawFree(vecs[i]->v);
    PyMem_RawFree(s->cpus);
    PyMem_Free(s->active);
    PyMem_Free(s->name_slot);
    for (int k = 0; k < 7; k++)
        Py_XDECREF(s->own[k]);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* ---- the names pass on its own thread (perfscan_pass.h) ---------------------- */

static PyObject *scanner_start(Scanner *s, PyObject *args)
{
    Py_ssize_t capacity, chunk_rows;
    int guess;
    if (!ready(s) || !PyArg_ParseTuple(args, "nnp", &capacity, &chunk_rows, &guess))
        return NULL;
    if (s->pass_started || s->own[0] != NULL || s->pos != s->data_off) {
        PyErr_SetString(PyExc_RuntimeError, "the pass of a Scanner starts once, unread");
        return NULL;
    }
    if (capacity < 1 || capacity > PY_SSIZE_T_MAX / 8) {
        PyErr_SetString(PyExc_ValueError, "bad capacity");
        return NULL;
    }
    for (int k = 0; k < 7; k++) {
        /* a page takes memory only once a row is written there */
        s->own[k] = block_new(capacity * COLUMN_SIZE[k]);
        if (s->own[k] == NULL)
            return NULL;
        s->own_at[k] = ((Block *)s->own[k])->at;
    }
    advise_huge(s);
    s->own_cap = capacity;
    s->pass_rows = chunk_rows;
    s->pass_guess = guess;
    if (pthread_create(&s->thread, NULL, pass_thread, s) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start the names pass thread");
        return NULL;
    }
    s->pass_started = s->pass_running = 1;
    Py_RETURN_NONE;
}

/* the pass's thread is done: NULL with an exception if it could not finish */
static int pass_ended(Scanner *s)
{
    if (!s->pass_started) {
        PyErr_SetString(PyExc_RuntimeError, "the Scanner's pass was not started");
        return 0;
    }
    settle(s);
    if (s->pass_rc < 0) {
        pending_error(s);
        return 0;
    }
    return 1;
}

static PyObject *scanner_wait(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    if (!ready(s) || !pass_ended(s))
        return NULL;
    return Py_BuildValue("ni", s->pass_count, s->pass_overflow);
}

static PyObject *scanner_items(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    if (!ready(s) || !pass_ended(s))
        return NULL;
    PyObject *out = PyList_New(s->items.n);
    for (Py_ssize_t i = 0; out != NULL && i < s->items.n; i++) {
        const Item *it = (const Item *)s->items.v + i;
        PyObject *item = it->type == ITEM_CHUNK ? Py_BuildValue("nn", it->start, it->stop)
                                                : loss_tuple(&it->loss);
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *scanner_columns(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    if (!ready(s) || !pass_ended(s))
        return NULL;
    return Py_BuildValue("(OOOOOOO)", s->own[0], s->own[1], s->own[2], s->own[3], s->own[4],
                         s->own[5], s->own[6]);
}

static PyMethodDef scanner_methods[] = {
    {"read", (PyCFunction)scanner_read, METH_VARARGS,
     "Fill the event columns: (count, why)."},
    {"take_loss", (PyCFunction)scanner_take_loss, METH_NOARGS,
     "The loss read() stopped before: (cpu, begin, end, count or None)."},
    {"side_band", (PyCFunction)scanner_side_band, METH_NOARGS,
     "COMM and FORK records read since the last call: [(offset, type, bytes)]."},
    {"names", (PyCFunction)scanner_names, METH_NOARGS,
     "Each tid's comm from its first switch: [(order key, tid, comm bytes)]."},
    {"active", (PyCFunction)scanner_active, METH_NOARGS,
     "The tids in released events, ascending."},
    {"status", (PyCFunction)scanner_status, METH_NOARGS,
     "What the pass has counted, and its error if any."},
    {"start", (PyCFunction)scanner_start, METH_VARARGS,
     "Run the whole pass on a thread of its own, into columns of its own."},
    {"wait", (PyCFunction)scanner_wait, METH_NOARGS,
     "Wait for the pass started by start(): (events, overflow)."},
    {"items", (PyCFunction)scanner_items, METH_NOARGS,
     "The started pass's chunks (start, stop) and losses (cpu, begin, end, count)."},
    {"columns", (PyCFunction)scanner_columns, METH_NOARGS,
     "The started pass's seven event columns (buffers numpy reads in place)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runstate.sources.linux._perfscan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One ordered pass over a perf.data data section.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)scanner_init,
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_methods = scanner_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_perfscan", "perf.data hot path: ordered sched events", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__perfscan(void)
{
    if (PyType_Ready(&ScannerType) < 0 || PyType_Ready(&BlockType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0 ||
        ABI_CONST_AS(m, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 || ABI_CONST(m, STOP_CHUNK) < 0 ||
        ABI_CONST(m, STOP_LOSS) < 0 || ABI_CONST(m, STOP_FULL) < 0 ||
        ABI_CONST(m, STOP_END) < 0 || ABI_CONST(m, STOP_ERROR) < 0 ||
        ABI_CONST(m, E_RECORD_SIZE) < 0 || ABI_CONST(m, E_TAIL) < 0 ||
        ABI_CONST(m, E_COMPRESSED) < 0 || ABI_CONST(m, E_SHORT) < 0 ||
        ABI_CONST(m, E_FORMAT) < 0 || ABI_CONST(m, PID_LIMIT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
