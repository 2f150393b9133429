/* The record walk of the perf.data C pass (_perfscan.c): the file window, records,
 * sched samples, and handing released events out.
 *
 * Nothing here calls Python or needs the GIL (the names pass runs it on a thread of
 * its own, perfscan_pass.h): memory comes from PyMem_Raw*, a failure to allocate is
 * returned as -1 and a failure to read the file leaves its errno in os_errno.
 */
#ifndef RUNSTATE_PERFSCAN_RECORDS_H
#define RUNSTATE_PERFSCAN_RECORDS_H

#include "perfscan.h"
#include "perfscan_order.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- the file window ------------------------------------------------------- */

static void unmap(Scanner *s)
{
    if (s->map != NULL) {
        if (s->mapped)
            munmap((void *)s->map, (size_t)s->map_len);
        else
            PyMem_RawFree((void *)s->map);
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
    /* populated up front: the walk's prefetches then find the pages mapped (a prefetch
     * of an unmapped page is dropped, and the walk waits on memory instead); windows are
     * small, as populating holds the address space's lock, and the names pass runs
     * beside a main thread that maps files while it imports */
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE;
#endif
    void *p = mmap(NULL, (size_t)n, PROT_READ, flags, s->fd, (off_t)start);
    if (p != MAP_FAILED) {
        s->mapped = 1;
    } else {
        /* a file that cannot be mapped is read into memory instead */
        uint8_t *buf = PyMem_RawMalloc((size_t)n);
        if (buf == NULL)
            return -1;
        int64_t got = 0;
        while (got < n) {
            ssize_t r = pread(s->fd, buf + got, (size_t)(n - got), (off_t)(start + got));
            if (r <= 0)
                break;
            got += r;
        }
        if (got < n) {
            s->os_errno = errno ? errno : EIO;
            PyMem_RawFree(buf);
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
    Py_ssize_t off = s->side_bytes.n;
    if (grow(&s->side_bytes, off + size, 1) < 0 || grow(&s->side, s->side.n + 1, sizeof(Side)) < 0)
        return -1;
    memcpy((uint8_t *)s->side_bytes.v + off, at(s, pos), (size_t)size);
    s->side_bytes.n += size;
    ((Side *)s->side.v)[s->side.n++] = (Side){pos, off, size, type};
    return 0;
}

/* a tid named by an event that is released: active */
static inline void mark_active(Scanner *s, int64_t pid)
{
    if (pid > 0 && pid < PID_LIMIT)
        s->active[pid >> 3] |= (uint8_t)(1u << (pid & 7));
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
    if (s->names_only)
        return 0; /* no event is handed out: no loss is placed */
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
        if (grow(&s->names, s->names.n + 1, sizeof(Name)) < 0)
            return; /* a name less: the tid stays unnamed */
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

/* the sched kind of a tracepoint id (ids are 16 bits in the raw data), or NULL */
static inline const Kind *kind_of(const Scanner *s, int64_t id)
{
    int i = id >= 0 && id <= 0xffff ? s->kind_index[id] : 0;
    return i ? &s->kinds[i - 1] : NULL;
}

/* whether a sample id is one of a sched tracepoint (one hash probe, usually) */
static inline int wanted_id(const Scanner *s, int64_t id)
{
    uint64_t mask = ((uint64_t)1 << s->id_bits) - 1;
    uint64_t h = ((uint64_t)id * 0x9E3779B97F4A7C15ull) >> (64 - s->id_bits);
    while (s->id_used[h]) {
        if (s->id_slots[h] == id)
            return 1;
        h = (h + 1) & mask;
    }
    return 0;
}

/* 0: done with the sample, 1: an error is set in s->err_*, -1: out of memory */
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
    if (k->wide) {
        for (int f = 0; f < 4; f++) {
            const Wide *w = &k->w[f];
            uint64_t u;
            memcpy(&u, raw + w->at, 8); /* at + 8 <= need <= raw_size */
            u <<= w->shift;
            int64_t x = w->sign ? (int64_t)u >> w->shift : (int64_t)(u >> w->shift);
            v[f] = w->present ? x : w->absent;
        }
    } else {
        for (int f = 0; f < 4; f++)
            if (k->f[f].off >= 0)
                v[f] = rd(raw + k->f[f].off, k->f[f].size, k->f[f].sign);
    }
    e.pid = (int32_t)v[0];
    e.other = (int32_t)v[1];
    e.pstate = v[2];
    e.actor = (int32_t)v[3];
    if (k->kind == K_SWITCH && s->name_slot != NULL) {
        int32_t block = (int32_t)((pos + size - s->data_off - 1) / BLOCK);
        name_from(s, raw, &k->comm[0], v[0], 2 * block);
        name_from(s, raw, &k->comm[1], v[1], 2 * block + 1);
    }
    if (s->names_only) {
        mark_active(s, e.pid);
        mark_active(s, e.other);
        s->pass_count++;
        return 0;
    }
    if (grow(&s->held, s->held.n + 1, sizeof(Ev)) < 0)
        return -1;
    ((Ev *)s->held.v)[s->held.n++] = e;
    if (!s->has_max || e.time > s->max_time)
        s->max_time = e.time;
    s->has_max = 1;
    Cpu *c = cpu_find(s, e.cpu, 1);
    if (c == NULL)
        return -1;
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
 * (0: go on, 1: an error is set, -1: out of memory, or s->os_errno) */
static int scan_some(Scanner *s)
{
    Py_ssize_t marks = s->marks.n;
    while (s->marks.n == marks && !s->ended) {
        int64_t left = s->data_end - s->pos;
        int64_t total = 0;
        uint32_t type = 0;
        int64_t size = 0;
        if ((++s->ticks & 0xffff) == 0 && __atomic_load_n(&s->cancel, __ATOMIC_RELAXED)) {
            /* a pass dropped (its scanner freed): a walk between round ends can be
             * the whole file, so the cancel is looked at here too */
            s->ended = 1;
            break;
        }
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

/* ---- handing out ------------------------------------------------------------ */

/* copy released events [head, head + take) into the columns from row n on (col NULL:
 * nowhere, they are only passed); the tids they name are active */
static void hand_out(Scanner *s, void *const *col, Py_ssize_t n, Py_ssize_t take)
{
    const Ev *ev = (const Ev *)s->held.v + s->head;
    for (Py_ssize_t i = 0; i < take; i++, n++) {
        const Ev *e = &ev[i];
        if (col != NULL) {
            ((int64_t *)col[0])[n] = e->time;
            ((int32_t *)col[1])[n] = e->cpu;
            ((int8_t *)col[2])[n] = e->kind;
            ((int32_t *)col[3])[n] = e->pid;
            ((int32_t *)col[4])[n] = e->other;
            ((int64_t *)col[5])[n] = e->pstate;
            ((int32_t *)col[6])[n] = e->actor;
        }
        mark_active(s, e->pid);
        mark_active(s, e->other);
    }
    s->head += take;
    s->since_chunk += take;
}

/* fill up to `cap` rows of the columns (col NULL: pass them by): the rows in *got and
 * why it stopped (STOP_*), or -2 when out of memory or the file could not be read */
static int fill(Scanner *s, void *const *col, Py_ssize_t cap, Py_ssize_t chunk_rows,
                Py_ssize_t *got)
{
    Py_ssize_t n = 0;
    int why;
    for (;;) {
        const Mark *marks = s->marks.v;
        /* hand out released events up to the next mark */
        Py_ssize_t upto = s->marks_head < s->marks.n ? marks[s->marks_head].at : s->released;
        Py_ssize_t take = upto - s->head < cap - n ? upto - s->head : cap - n;
        hand_out(s, col, n, take);
        n += take;
        if (s->head < upto) {
            why = STOP_FULL;
            break;
        }
        if (s->marks_head < s->marks.n) {
            const Mark *m = &marks[s->marks_head++];
            if (m->type == M_LOSS) {
                s->taken = m->loss;
                s->since_chunk = 0;
                why = STOP_LOSS;
                break;
            }
            if (s->since_chunk >= chunk_rows) {
                s->since_chunk = 0;
                why = STOP_CHUNK;
                break;
            }
            continue;
        }
        /* all handed out: read on */
        drop_released(s);
        if (s->ended) {
            why = STOP_END;
            break;
        }
        int rc = scan_some(s);
        if (rc < 0)
            return -2;
        if (rc > 0) {
            why = STOP_ERROR;
            break;
        }
    }
    *got = n;
    return why;
}

#endif
