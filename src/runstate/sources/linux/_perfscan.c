/* The perf.data hot path: one pass over the data section, in C.
 *
 * Scanner(fd, data_offset, data_size, layout, kinds, ids, flags) maps the data
 * section 32 MiB at a time (never the whole file; it keeps a duplicate of fd),
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
 * read(columns, chunk_rows) fills the seven event columns (time i64, cpu i32,
 * kind i8, pid i32, other i32, prev_state i64, actor i32) with released events
 * and returns (count, why): STOP_CHUNK at a round's end once chunk_rows events
 * have been given since the last stop, STOP_LOSS before a loss (take_loss()
 * gives it), STOP_FULL when the columns are full, STOP_END when the data is
 * done, STOP_ERROR with status()["error"] set to (code, byte offset, count,
 * kind).  Everything read from the file is bounds-checked against the record
 * it belongs to and the data section.
 *
 * layout: (time, cpu, id, before_callchain, callchain, trailer_time,
 *          trailer_cpu, multi)  -- byte offsets in a sample body; the trailer
 *          fields count back from a record's end (0: absent)
 * kinds:  per sched tracepoint (id, kind, need, bad, then offset, size,
 *          signed of pid, other, prev_state, actor, then offset, size of the
 *          two comm fields) -- offset -1: absent
 * ids:    sorted int64 sample ids of the sched tracepoints (used with multi)
 * flags:  (truncated, lenient, n_streams or -1)
 */
#include "perfscan.h"
#include "perfscan_order.h"

#include <sys/mman.h>
#include <unistd.h>

#include "../../kernel_abi.h"

/* ---- the file window ------------------------------------------------------- */

static void unmap(Scanner *s)
{
    if (s->map != NULL) {
        if (s->mapped)
            munmap((void *)s->map, (size_t)s->map_len);
        else
            PyMem_Free((void *)s->map);
    }
    s->map = NULL;
    s->map_len = 0;
}

/* make [pos, pos + len) readable (len <= MAX_RECORD, pos + len <= data_end) */
static int map_window(Scanner *s, int64_t pos);

static inline int need_bytes(Scanner *s, int64_t pos, int64_t len)
{
    if (s->map != NULL && pos >= s->map_off && pos + len <= s->map_off + s->map_len)
        return 0;
    return map_window(s, pos);
}

static int map_window(Scanner *s, int64_t pos)
{
    unmap(s);
    long page = sysconf(_SC_PAGESIZE);
    int64_t start = pos - pos % (page > 0 ? page : 4096);
    int64_t n = s->data_end - start;
    if (n > WINDOW)
        n = WINDOW;
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE;
#endif
    void *p = mmap(NULL, (size_t)n, PROT_READ, flags, s->fd, (off_t)start);
    if (p != MAP_FAILED) {
        s->mapped = 1;
    } else {
        /* a file that cannot be mapped is read into memory instead */
        uint8_t *buf = PyMem_Malloc((size_t)n);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        int64_t got = 0;
        while (got < n) {
            ssize_t r = pread(s->fd, buf + got, (size_t)(n - got), (off_t)(start + got));
            if (r <= 0)
                break;
            got += r;
        }
        if (got < n) {
            PyMem_Free(buf);
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        p = buf;
        s->mapped = 0;
    }
    s->map = p;
    s->map_off = start;
    s->map_len = n;
    return 0;
}

static const uint8_t *at(const Scanner *s, int64_t pos)
{
    return s->map + (pos - s->map_off);
}

static int64_t rd(const uint8_t *p, int size, int sign)
{
    switch (size) {
    case 1:
        return sign ? (int64_t)(int8_t)p[0] : (int64_t)p[0];
    case 2: {
        uint16_t v;
        memcpy(&v, p, 2);
        return sign ? (int64_t)(int16_t)v : (int64_t)v;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        return sign ? (int64_t)(int32_t)v : (int64_t)v;
    }
    default: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
}

/* ---- records ---------------------------------------------------------------- */

static int fail(Scanner *s, int code, int64_t off, int64_t n, int kind)
{
    s->err_code = code;
    s->err_off = off;
    s->err_n = n;
    s->err_kind = kind;
    return 1;
}

static int side_band(Scanner *s, int64_t pos, uint32_t type, int64_t size)
{
    PyObject *item = Py_BuildValue("LIy#", (long long)pos, (unsigned)type,
                                   (const char *)at(s, pos), (Py_ssize_t)size);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(s->side, item);
    Py_DECREF(item);
    return rc;
}

static int lost(Scanner *s, int64_t pos, int64_t size, int count_at)
{
    const uint8_t *p = at(s, pos);
    Loss loss = {0, 0, -1, 0, s->n_losses++, 0};
    if (size >= count_at + 8) {
        loss.count = rd(p + count_at, 8, 1);
        loss.has_count = 1;
    }
    if (s->t_at && size - s->t_at >= 8)
        loss.end = rd(p + size - s->t_at, 8, 1);
    if (s->cpu_at && size - s->cpu_at >= 8)
        loss.cpu = rd(p + size - s->cpu_at, 4, 0);
    if (loss.end <= 0) {
        /* perf's end-of-run summaries: counted, never placed */
        s->untimed += loss.has_count && loss.count != 0 ? loss.count : 1;
        return 0;
    }
    if (grow(&s->pending, s->pending.n + 1, sizeof(Loss)) < 0)
        return -1;
    ((Loss *)s->pending.v)[s->pending.n++] = loss;
    return 0;
}

static void name_from(Scanner *s, const uint8_t *raw, const Fld *f, int64_t pid, int32_t key)
{
    if (f->off < 0 || pid <= 0 || pid >= PID_LIMIT)
        return;
    int32_t slot = s->name_slot[pid];
    Name *nm;
    if (slot == 0) {
        if (grow(&s->names, s->names.n + 1, sizeof(Name)) < 0) {
            PyErr_Clear(); /* a name less: the tid stays unnamed */
            return;
        }
        nm = (Name *)s->names.v + s->names.n++;
        s->name_slot[pid] = (int32_t)s->names.n;
    } else {
        nm = (Name *)s->names.v + (slot - 1);
        if (nm->key <= key)
            return;
    }
    nm->pid = (int32_t)pid;
    nm->key = key;
    int len = 0;
    while (len < f->size && raw[f->off + len] != 0)
        len++;
    memcpy(nm->comm, raw + f->off, (size_t)len);
    nm->len = len;
}

static int short_sample(Scanner *s, int64_t pos, int64_t size)
{
    if (s->lenient || s->truncated) {
        s->malformed++;
        return 0;
    }
    if (s->short_n++ == 0) {
        s->short_off = pos;
        s->short_block = (pos + size - s->data_off - 1) / BLOCK;
    }
    return 0;
}

static const Kind *kind_of(const Scanner *s, int64_t id)
{
    for (int k = 0; k < s->n_kinds; k++)
        if (s->kinds[k].id == id)
            return &s->kinds[k];
    return NULL;
}

static int wanted_id(const Scanner *s, int64_t id)
{
    if (s->n_ids <= 32) {
        /* a few ids (one per tracepoint and CPU): compared all at once, no branches */
        int found = 0;
        for (Py_ssize_t i = 0; i < s->n_ids; i++)
            found |= s->ids[i] == id;
        return found;
    }
    Py_ssize_t lo = 0, hi = s->n_ids;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (s->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n_ids && s->ids[lo] == id;
}

/* 0: done with the sample, 1: an error is set in s->err_*, -1: a Python error */
static int sample(Scanner *s, int64_t pos, int64_t size)
{
    const uint8_t *rec = at(s, pos);
    int64_t body = 8, end = size;
    if (body + s->l_bc + (s->callchain ? 8 : 4) > end)
        return short_sample(s, pos, size);
    if (s->multi && s->l_id >= 0 && !wanted_id(s, rd(rec + body + s->l_id, 8, 1)))
        return 0;
    int64_t raw_at = body + s->l_bc;
    if (s->callchain) {
        int64_t nr = rd(rec + raw_at, 8, 1);
        if (nr < 0 || nr >= 1 << 16)
            return short_sample(s, pos, size);
        raw_at += 8 + 8 * nr;
    }
    if (raw_at + 4 > end)
        return short_sample(s, pos, size);
    int64_t raw_size = rd(rec + raw_at, 4, 0);
    if (raw_at + 4 + raw_size > end || raw_size < 8)
        return short_sample(s, pos, size);
    const uint8_t *raw = rec + raw_at + 4;
    const Kind *k = kind_of(s, rd(raw, 2, 0));
    if (k == NULL)
        return 0;
    if (k->need > raw_size)
        return short_sample(s, pos, size);
    if (k->bad)
        return fail(s, E_FORMAT, pos, 0, k->kind);
    Ev e;
    e.time = rd(rec + body + s->l_time, 8, 1);
    e.cpu = (int32_t)rd(rec + body + s->l_cpu, 4, 0);
    e.kind = (int8_t)k->kind;
    int64_t v[4] = {-1, -1, 0, -1};
    for (int f = 0; f < 4; f++)
        if (k->f[f].off >= 0)
            v[f] = rd(raw + k->f[f].off, k->f[f].size, k->f[f].sign);
    e.pid = (int32_t)v[0];
    e.other = (int32_t)v[1];
    e.pstate = v[2];
    e.actor = (int32_t)v[3];
    if (k->kind == K_SWITCH && s->name_slot != NULL) {
        int32_t block = (int32_t)((pos + size - s->data_off - 1) / BLOCK);
        name_from(s, raw, &k->comm[0], v[0], 2 * block);
        name_from(s, raw, &k->comm[1], v[1], 2 * block + 1);
    }
    if (grow(&s->held, s->held.n + 1, sizeof(Ev)) < 0)
        return -1;
    ((Ev *)s->held.v)[s->held.n++] = e;
    if (!s->has_max || e.time > s->max_time)
        s->max_time = e.time;
    s->has_max = 1;
    Cpu *c = cpu_find(s, e.cpu, 1);
    if (c == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c->last_file = e.time;
    return 0;
}

/* the samples too short in a finished block are an error (unless lenient) */
static int short_error(Scanner *s, int64_t block)
{
    if (s->short_n == 0 || block <= s->short_block)
        return 0;
    return fail(s, E_SHORT, s->short_off, s->short_n, 0);
}

/* walk records until one round's events are released or the data ends
 * (0: go on, 1: an error is set, -1: a Python error) */
static int scan_some(Scanner *s)
{
    Py_ssize_t marks = s->marks.n;
    while (s->marks.n == marks && !s->ended) {
        int64_t left = s->data_end - s->pos;
        int64_t total = 0;
        uint32_t type = 0;
        int64_t size = 0;
        if (left >= 8) {
            if (need_bytes(s, s->pos, left < 16 ? left : 16) < 0)
                return -1;
            if (s->pos + PREFETCH + 128 <= s->map_off + s->map_len) {
                __builtin_prefetch(at(s, s->pos + PREFETCH));
                __builtin_prefetch(at(s, s->pos + PREFETCH + 64));
            }
            uint16_t sz;
            memcpy(&type, at(s, s->pos), 4);
            memcpy(&sz, at(s, s->pos) + 6, 2);
            size = sz;
            if (size < 8)
                return fail(s, E_RECORD_SIZE, s->pos, 0, 0);
            total = size;
            if (type == REC_AUXTRACE) {
                if (left < 16) {
                    total = left + 1;
                } else {
                    uint64_t aux;
                    memcpy(&aux, at(s, s->pos) + 8, 8);
                    if (aux > (uint64_t)1 << 40)
                        return fail(s, E_RECORD_SIZE, s->pos, 0, 0);
                    total += (int64_t)aux;
                }
            }
        }
        if (left < 8 || total > left) {
            if (s->short_n && fail(s, E_SHORT, s->short_off, s->short_n, 0))
                return 1;
            if (left > 0) {
                if (!s->truncated)
                    return fail(s, E_TAIL, s->pos, left, 0);
                s->tail_bytes += left;
            }
            unmap(s);
            if (finish(s) < 0)
                return -1;
            break;
        }
        if (s->short_n && short_error(s, (s->pos + total - s->data_off - 1) / BLOCK))
            return 1;
        int rc = 0;
        if (type == REC_SAMPLE || type == REC_COMM || type == REC_FORK || type == REC_LOST ||
            type == REC_LOST_SAMPLES) {
            if (need_bytes(s, s->pos, size) < 0)
                return -1;
        }
        switch (type) {
        case REC_SAMPLE:
            rc = sample(s, s->pos, size);
            break;
        case REC_COMM:
        case REC_FORK:
            rc = side_band(s, s->pos, type, size);
            break;
        case REC_LOST:
            rc = lost(s, s->pos, size, 16);
            break;
        case REC_LOST_SAMPLES:
            rc = lost(s, s->pos, size, 8);
            break;
        case REC_FINISHED_ROUND:
            rc = round_end(s);
            break;
        case REC_COMPRESSED:
            return fail(s, E_COMPRESSED, s->pos, 0, 0);
        default:
            break;
        }
        if (rc != 0)
            return rc;
        s->pos += total;
    }
    return 0;
}

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

/* copy released events [head, head + take) into the columns from row n on; the tids
 * they name are active */
static void hand_out(Scanner *s, void *const col[7], Py_ssize_t n, Py_ssize_t take)
{
    const Ev *ev = (const Ev *)s->held.v + s->head;
    for (Py_ssize_t i = 0; i < take; i++, n++) {
        const Ev *e = &ev[i];
        ((int64_t *)col[0])[n] = e->time;
        ((int32_t *)col[1])[n] = e->cpu;
        ((int8_t *)col[2])[n] = e->kind;
        ((int32_t *)col[3])[n] = e->pid;
        ((int32_t *)col[4])[n] = e->other;
        ((int64_t *)col[5])[n] = e->pstate;
        ((int32_t *)col[6])[n] = e->actor;
        if (e->pid > 0 && e->pid < PID_LIMIT)
            s->active[e->pid >> 3] |= (uint8_t)(1u << (e->pid & 7));
        if (e->other > 0 && e->other < PID_LIMIT)
            s->active[e->other >> 3] |= (uint8_t)(1u << (e->other & 7));
    }
    s->head += take;
    s->since_chunk += take;
}

/* fill up to `cap` rows of the columns: returns (rows, why), NULL on a Python error */
static PyObject *fill(Scanner *s, void *const col[7], Py_ssize_t cap, Py_ssize_t chunk_rows)
{
    Py_ssize_t n = 0;
    for (;;) {
        const Mark *marks = s->marks.v;
        /* hand out released events up to the next mark */
        Py_ssize_t upto = s->marks_head < s->marks.n ? marks[s->marks_head].at : s->released;
        Py_ssize_t take = upto - s->head < cap - n ? upto - s->head : cap - n;
        hand_out(s, col, n, take);
        n += take;
        if (s->head < upto)
            return stop(n, STOP_FULL);
        if (s->marks_head < s->marks.n) {
            const Mark *m = &marks[s->marks_head++];
            if (m->type == M_LOSS) {
                s->taken = m->loss;
                s->since_chunk = 0;
                return stop(n, STOP_LOSS);
            }
            if (s->since_chunk >= chunk_rows) {
                s->since_chunk = 0;
                return stop(n, STOP_CHUNK);
            }
            continue;
        }
        /* all handed out: read on */
        drop_released(s);
        if (s->ended)
            return stop(n, STOP_END);
        int rc = scan_some(s);
        if (rc < 0)
            return NULL;
        if (rc > 0)
            return stop(n, STOP_ERROR);
    }
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
    static const int sizes[7] = {8, 4, 1, 4, 4, 8, 4};
    Py_buffer views[7];
    void *col[7];
    Py_ssize_t cap = -1;
    int nv = 0;
    PyObject *result = NULL;
    for (; nv < 7; nv++) {
        Py_ssize_t count;
        col[nv] = abi_view(&views[nv], PyTuple_GET_ITEM(cols, nv), "column", AK_SIGNED,
                           sizes[nv], 1, &count);
        if (col[nv] == NULL)
            goto done;
        if (cap >= 0 && count != cap) {
            PyErr_SetString(PyExc_ValueError, "event columns differ in length");
            nv++;
            goto done;
        }
        cap = count;
    }
    result = fill(s, col, cap, chunk_rows);
done:
    for (int i = 0; i < nv; i++)
        PyBuffer_Release(&views[i]);
    return result;
}

static PyObject *scanner_take_loss(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    const Loss *l = &s->taken;
    if (!l->has_count)
        return Py_BuildValue("LLLO", (long long)l->cpu, (long long)l->begin,
                             (long long)l->end, Py_None);
    return Py_BuildValue("LLLL", (long long)l->cpu, (long long)l->begin, (long long)l->end,
                         (long long)l->count);
}

static PyObject *scanner_side_band(Scanner *s, PyObject *noargs)
{
    (void)noargs;
    if (!ready(s))
        return NULL;
    PyObject *out = s->side;
    s->side = PyList_New(0);
    if (s->side == NULL) {
        s->side = out;
        return NULL;
    }
    return out;
}

static PyObject *scanner_names(Scanner *s, PyObject *noargs)
{
    (void)noargs;
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
    s->ids = PyMem_Malloc((size_t)(n_ids ? n_ids : 1) * sizeof(int64_t));
    if (s->ids != NULL && n_ids > 0)
        memcpy(s->ids, p, (size_t)n_ids * sizeof(int64_t));
    PyBuffer_Release(&b);
    s->n_ids = n_ids;
    s->active = PyMem_Calloc(PID_LIMIT / 8, 1);
    s->name_slot = PyMem_Calloc(PID_LIMIT, sizeof(int32_t));
    s->side = PyList_New(0);
    if (s->ids == NULL || s->active == NULL || s->name_slot == NULL || s->side == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    s->initialized = 1;
    return 0;
}

static void scanner_dealloc(Scanner *s)
{
    unmap(s);
    if (s->init_called && s->fd >= 0)
        close(s->fd);
    PyMem_Free(s->ids);
    PyMem_Free(s->held.v);
    PyMem_Free(s->tmp.v);
    PyMem_Free(s->runs.v);
    PyMem_Free(s->pending.v);
    PyMem_Free(s->cpus);
    PyMem_Free(s->marks.v);
    PyMem_Free(s->active);
    PyMem_Free(s->name_slot);
    PyMem_Free(s->names.v);
    Py_XDECREF(s->side);
    Py_TYPE(s)->tp_free((PyObject *)s);
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
    if (PyType_Ready(&ScannerType) < 0)
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
