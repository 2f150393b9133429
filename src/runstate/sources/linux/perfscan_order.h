/* Round order of the perf.data C pass (_perfscan.c): perf's FINISHED_ROUND rule.
 *
 * Held events are released at each round's end up to the largest time seen when
 * the previous round ended, in time order, ties in file order; due losses are
 * placed among them.  A cut-off file releases what it proves complete.
 */
#ifndef RUNSTATE_PERFSCAN_ORDER_H
#define RUNSTATE_PERFSCAN_ORDER_H

#include "perfscan.h"

/* ---- round order ----------------------------------------------------------- */

/* stable merge sort of the held events by time (a natural merge of their runs) */
static int sort_held(Scanner *s)
{
    Ev *a = s->held.v;
    Py_ssize_t n = s->held.n, nr = 0;
    Py_ssize_t i;
    for (i = 1; i < n && a[i].time >= a[i - 1].time; i++)
        ;
    if (i >= n)
        return 0;
    if (grow(&s->tmp, n, sizeof(Ev)) < 0 || grow(&s->runs, n + 1, sizeof(Py_ssize_t)) < 0)
        return -1;
    Py_ssize_t *runs = s->runs.v;
    runs[nr++] = 0;
    for (i = 1; i < n; i++)
        if (a[i].time < a[i - 1].time)
            runs[nr++] = i;
    runs[nr] = n;
    Ev *src = a, *dst = s->tmp.v;
    while (nr > 1) {
        Py_ssize_t out = 0;
        for (Py_ssize_t r = 0; r < nr; r += 2) {
            Py_ssize_t lo = runs[r], mid = runs[r + 1];
            Py_ssize_t hi = r + 2 <= nr ? runs[r + 2] : mid;
            Py_ssize_t x = lo, y = mid, k = lo;
            while (x < mid && y < hi)
                dst[k++] = src[y].time < src[x].time ? src[y++] : src[x++];
            while (x < mid)
                dst[k++] = src[x++];
            while (y < hi)
                dst[k++] = src[y++];
            runs[out++] = lo;
        }
        runs[out] = n;
        nr = out;
        Ev *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof(Ev));
    return 0;
}

static int push_mark(Scanner *s, int type, Py_ssize_t at, const Loss *loss)
{
    if (grow(&s->marks, s->marks.n + 1, sizeof(Mark)) < 0)
        return -1;
    Mark *m = (Mark *)s->marks.v + s->marks.n++;
    m->at = at;
    m->type = type;
    if (loss != NULL)
        m->loss = *loss;
    return 0;
}

/* the time of the last released event on `cpu` before ev[upto] (events from *cursor on
 * are noted first); 0 if it has none */
static int last_on(Scanner *s, const Ev *ev, Py_ssize_t *cursor, Py_ssize_t upto,
                   int64_t cpu, int64_t *t)
{
    int64_t now = s->n_releases + 1;
    for (; *cursor < upto; (*cursor)++) {
        Cpu *c = cpu_find(s, ev[*cursor].cpu, 0);
        if (c != NULL) {
            c->seen_stamp = now;
            c->seen_time = ev[*cursor].time;
        }
    }
    Cpu *c = cpu_find(s, cpu, 0);
    if (c != NULL && c->seen_stamp == now)
        *t = c->seen_time;
    else if (c != NULL && c->has_out)
        *t = c->last_out;
    else
        return 0;
    return 1;
}

/* remember each CPU's last released event (a later loss there began after it) */
static void note_last(Scanner *s, const Ev *ev, Py_ssize_t n)
{
    s->n_releases++;
    Py_ssize_t found = 0;
    for (Py_ssize_t i = n - 1; i >= 0 && found < s->n_cpus; i--) {
        Cpu *c = cpu_find(s, ev[i].cpu, 0);
        if (c != NULL && c->stamp != s->n_releases) {
            c->stamp = s->n_releases;
            c->has_out = 1;
            c->last_out = ev[i].time;
            found++;
        }
    }
}

static Py_ssize_t lower_bound(const Ev *a, Py_ssize_t n, int64_t t)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (a[mid].time < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static Py_ssize_t upper_bound(const Ev *a, Py_ssize_t n, int64_t t)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (a[mid].time <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int by_end(const void *x, const void *y)
{
    const Loss *a = x, *b = y;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* release the held events up to `limit` (all with all=1), losses placed among them */
static int release(Scanner *s, int all, int64_t limit)
{
    if (s->held.n == 0 && s->pending.n == 0)
        return 0;
    if (sort_held(s) < 0 || grow(&s->held, 1, sizeof(Ev)) < 0)
        return -1;
    Ev *ev = s->held.v; /* never NULL: offsets from it are defined */
    Py_ssize_t n = s->held.n;
    Py_ssize_t cut = all ? n : upper_bound(ev, n, limit);
    /* due losses in time order (equal times in file order) */
    Loss *pl = s->pending.v;
    Py_ssize_t kept = 0, n_due = 0;
    Loss *due = NULL;
    for (Py_ssize_t i = 0; i < s->pending.n; i++)
        if (all || pl[i].end <= limit)
            n_due++;
    if (n_due) {
        due = PyMem_RawMalloc((size_t)n_due * sizeof(Loss));
        if (due == NULL)
            return -1;
        Py_ssize_t k = 0;
        for (Py_ssize_t i = 0; i < s->pending.n; i++) {
            if (all || pl[i].end <= limit)
                due[k++] = pl[i];
            else
                pl[kept++] = pl[i];
        }
        s->pending.n = kept;
        qsort(due, (size_t)n_due, sizeof(Loss), by_end);
    }
    int rc = 0;
    Py_ssize_t cursor = 0;
    for (Py_ssize_t i = 0; i < n_due && rc == 0; i++) {
        Loss loss = due[i];
        Py_ssize_t where = lower_bound(ev, cut, loss.end);
        int64_t begin;
        if (!last_on(s, ev, &cursor, where, loss.cpu, &begin) || begin > loss.end)
            begin = loss.end;
        loss.begin = begin;
        rc = push_mark(s, M_LOSS, where, &loss);
    }
    PyMem_RawFree(due);
    if (rc < 0 || push_mark(s, M_RELEASE, cut, NULL) < 0)
        return -1;
    note_last(s, ev, cut);
    s->released = cut;
    return 0;
}

/* the released events are all handed out: drop them from the held ones */
static void drop_released(Scanner *s)
{
    Ev *ev = s->held.v;
    if (s->released > 0)
        memmove(ev, ev + s->released, (size_t)(s->held.n - s->released) * sizeof(Ev));
    s->held.n -= s->released;
    s->released = s->head = 0;
    s->marks.n = s->marks_head = 0;
}

static int round_end(Scanner *s)
{
    if (s->names_only)
        return 0;
    int had = s->has_limit;
    int64_t limit = s->limit;
    s->has_limit = s->has_max;
    s->limit = s->max_time;
    if (!had)
        return 0;
    s->has_released = 1;
    s->released_until = limit;
    return release(s, 0, limit);
}

/* the time up to which the events read so far are known to be all there */
static int complete_until(const Scanner *s, int64_t *until)
{
    int have = s->has_released;
    int64_t best = s->released_until;
    if (s->n_streams >= 0 && s->n_cpus >= s->n_streams && s->n_cpus > 0) {
        int64_t low = INT64_MAX;
        for (Py_ssize_t i = 0; i < s->cpu_cap; i++)
            if (s->cpus[i].used && s->cpus[i].last_file < low)
                low = s->cpus[i].last_file;
        if (!have || low > best)
            best = low;
        have = 1;
    }
    *until = best;
    return have;
}

/* the data is done: release everything, or what a cut-off file proves complete */
static int finish(Scanner *s)
{
    s->ended = 1;
    if (s->names_only)
        return 0;
    if (!s->truncated)
        return release(s, 1, 0);
    int64_t until;
    if (complete_until(s, &until) && release(s, 0, until) < 0)
        return -1;
    s->dropped = s->held.n - s->released + s->pending.n;
    s->held.n = s->released;
    s->pending.n = 0;
    return 0;
}

#endif
