/*
 * Exact mode's first pass over a xentrace file (_job.c): each vCPU's first
 * record.
 *
 * Why C: the generic first pass decodes, merges and resolves every record
 * just to learn, per vCPU, the old state of its first record.  One walk of
 * the mapped file (walk_core.h decodes, exactly as for the generic path)
 * keeps only that: per vCPU the record with the smallest (TSC, byte offset),
 * which is the vCPU's first row in the merged order, so the order of these
 * records is also the order the generic path registers the vCPUs in.
 * Besides, the walker's counters, each pcpu's last TSC and the first
 * timestamp of its first window (as _walk.index gives it), where a cut final
 * window stops, and the rows themselves, up to a budget, for the second pass
 * (fastpath.h).
 *
 * The file can be walked in chunks at once, split at window headers.  A
 * chunk cannot know what the one before left behind (each pcpu's last TSC):
 * if it needed that, or the chunks disagree at the seam, the walk of the
 * chunks before simply goes on over it (join).  The result is the one-walk
 * result either way.
 *
 * Files that need the generic path (a lost record: loss windows; a record
 * skipped or a header resynced by --lenient; any error; no vCPU record) end
 * the walk with SCAN_GENERIC, and the generic path then reads them (and
 * reports their errors) as before.
 */
#ifndef RUNSTATE_XENTRACE_SCAN_CORE_H
#define RUNSTATE_XENTRACE_SCAN_CORE_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "walk_core.h"
#include "fastpath.h"

/* a scan's status (Job.scanned()) */
enum { SCAN_MORE = 0, SCAN_DONE = 1, SCAN_GENERIC = 2 };
/* the old state of a continue-running record: running (a member state code) */
enum { CONTINUE_OLD = 0 };
/* summary slots */
enum { SUM_FIRST, SUM_LAST, SUM_LAST_CHANGE, SUM_ROWS, SUM_TRUNCATED, N_SUM };

/* walks joined into one at the most (their kept rows stay where they are) */
enum { MAX_JOINED = 8 };

/* parts the kept rows are kept apart for, at the most */
enum { MAX_KEEPS = 8 };

/* The rows kept for one part of the domains: this walk's, in one allocation
 * (big_alloc) whose pages are taken as rows are written, and those of walks
 * joined into this one; every window kept, in file order, with its rows
 * (their number in the window may be 0). */
typedef struct {
    KeptRow *rows, *more[MAX_JOINED];
    size_t bytes, more_bytes[MAX_JOINED];
    int n_more;
    int64_t n;    /* slots of `rows` used */
    int64_t last; /* the TSC of the open window's last row here, -1: none yet */
    KeptWindow *windows;
    int64_t n_windows, cap_windows;
} Keep;

static void keep_free(Keep *k)
{
    big_free(k->rows, k->bytes);
    for (int i = 0; i < k->n_more; i++)
        big_free(k->more[i], k->more_bytes[i]);
    free(k->windows);
    memset(k, 0, sizeof *k);
}

/* the part of the domains a vCPU key's rows are kept in */
static inline int keep_part(int64_t key, int n_keeps)
{
    return (int)((key >> 16) % n_keeps);
}

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
    const int *stop; /* set (atomically) by another thread: give up (NULL: never) */
    /* the rows kept for the second pass (fastpath.h), window by window, up to
     * keep_rows of them in all, apart for each part of the domains (a
     * domain's rows go to part dom % n_keeps) */
    int64_t keep_rows, n_kept;
    int n_keeps, keeping, open_kept; /* open_kept: the last window entered is kept */
    Keep keeps[MAX_KEEPS];
} Scan;

/* let go of the rows kept for the second pass */
static void scan_drop_kept(Scan *s)
{
    for (int i = 0; i < MAX_KEEPS; i++)
        keep_free(&s->keeps[i]);
    s->keep_rows = s->n_kept = 0;
    s->n_keeps = s->keeping = s->open_kept = 0;
}

static void scan_free(Scan *s)
{
    table_free(&s->table);
    free(s->firsts);
    s->firsts = NULL;
    s->cap = 0;
    scan_drop_kept(s);
}

/* keep up to `rows` slots of rows in all for the second pass, apart for
 * `parts` parts of the domains: 0, or -1 out of memory (then none are kept,
 * which is no error) */
static int scan_keep(Scan *s, int64_t rows, int parts)
{
    scan_drop_kept(s);
    if (rows <= 0 || parts < 1 || parts > MAX_KEEPS)
        return 0;
    for (int i = 0; i < parts; i++) {
        Keep *k = &s->keeps[i];
        k->bytes = (size_t)rows * sizeof *k->rows; /* all of them may be one part's */
        if ((k->rows = big_alloc(k->bytes)) == NULL) {
            scan_drop_kept(s);
            return -1;
        }
    }
    s->keep_rows = rows;
    s->n_keeps = parts;
    s->keeping = 1;
    return 0;
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
    s->stop = NULL;
    s->keep_rows = s->n_kept = 0;
    s->n_keeps = s->keeping = s->open_kept = 0;
    memset(s->keeps, 0, sizeof s->keeps);
    return table_init(&s->table, 64);
}

/* room for one more vCPU: 0, or -1 out of memory */
static int grow_firsts(Scan *s)
{
    if (s->table.n < s->cap)
        return 0;
    int64_t cap = s->cap ? 2 * s->cap : 64;
    First *firsts = realloc(s->firsts, (size_t)cap * sizeof *firsts);
    if (firsts == NULL)
        return -1;
    s->firsts = firsts;
    s->cap = cap;
    return 0;
}

/* the number of vCPU `key` (added if new), or -1 out of memory.  Inlined
 * into the walk: 8 % of its time. */
static inline __attribute__((always_inline)) int32_t vcpu_number(Scan *s, int64_t key)
{
    int32_t m = table_find(&s->table, key);
    if (m < 0) {
        if (grow_firsts(s) < 0 || table_add(&s->table, key) < 0)
            return -1;
        m = (int32_t)(s->table.n - 1);
        s->firsts[m] = (First){key, INT64_MAX, 0, 0};
    }
    return m;
}

/* vCPU `key`'s record at (time, off) with this old state, if it is the vCPU's
 * first so far: its number, or -1 out of memory */
static int32_t keep_first(Scan *s, int64_t key, int64_t time, int64_t off, int64_t old)
{
    int32_t m = vcpu_number(s, key);
    if (m < 0)
        return -1;
    First *f = &s->firsts[m];
    if (time < f->time || (time == f->time && off < f->off))
        *f = (First){key, time, off, old};
    return m;
}

/* the rows of the window just entered (at w) are kept if they fit */
static void keep_window(Scan *s, const Walk *w, int64_t len)
{
    s->open_kept = 0;
    int64_t end = w->wend < len ? w->wend : len;
    if (!s->keeping || s->n_kept + (end - w->off) / MIN_ROW_BYTES > s->keep_rows)
        return; /* the second pass decodes it */
    for (int i = 0; i < s->n_keeps; i++) {
        Keep *k = &s->keeps[i];
        if (k->n_windows == k->cap_windows) {
            int64_t cap = k->cap_windows ? 2 * k->cap_windows : 256;
            KeptWindow *grown = realloc(k->windows, (size_t)cap * sizeof *grown);
            if (grown == NULL) {
                s->keeping = 0;
                return;
            }
            k->windows = grown;
            k->cap_windows = cap;
        }
    }
    for (int i = 0; i < s->n_keeps; i++) {
        Keep *k = &s->keeps[i];
        k->windows[k->n_windows++] = (KeptWindow){.header = w->off - 12, .rows = k->rows + k->n,
                                                  .n = 0, .base = 0, .last_tsc = -1};
        k->last = -1;
    }
    s->open_kept = 1;
}

/* the window being kept is left with its pcpu at TSC `tsc` */
static inline void close_kept(Scan *s, int64_t tsc)
{
    for (int i = 0; s->open_kept && i < s->n_keeps; i++)
        s->keeps[i].windows[s->keeps[i].n_windows - 1].last_tsc = tsc;
    s->open_kept = 0;
}

/* no more rows kept: the window being kept is dropped (the second pass decodes it) */
static void stop_keeping(Scan *s)
{
    for (int i = 0; s->open_kept && i < s->n_keeps; i++) {
        Keep *k = &s->keeps[i];
        int64_t n = k->windows[--k->n_windows].n;
        k->n -= n;
        s->n_kept -= n;
    }
    s->open_kept = 0;
    s->keeping = 0;
}

/* a row of the open window into part k: its step from the row before (see
 * KeptRow), and its fields */
static inline void keep_row(Scan *s, Keep *k, int64_t tsc, int32_t fields)
{
    KeptWindow *w = &k->windows[k->n_windows - 1];
    if (k->last < 0)
        w->base = k->last = tsc;
    int64_t step = tsc - k->last; /* a window's TSCs never go back */
    int slots = step >> 32 ? 2 : 1;
    if (s->n_kept + slots > s->keep_rows) {
        /* more steps of 2^32 cycles than a window's bound allowed for */
        stop_keeping(s);
        return;
    }
    if (step >> 32)
        k->rows[k->n++] = (KeptRow){(uint32_t)(step >> 32), STEP_HIGH};
    k->rows[k->n++] = (KeptRow){(uint32_t)step, fields};
    k->last = tsc;
    w->n += slots;
    s->n_kept += slots;
}

static int scan_row(Scan *s, const Row *r, int64_t pcpu)
{
    s->sum[SUM_ROWS] += 1;
    s->pcpu_rows[pcpu] += 1;
    if (r->tsc < s->sum[SUM_FIRST])
        s->sum[SUM_FIRST] = r->tsc;
    if (r->tsc > s->sum[SUM_LAST])
        s->sum[SUM_LAST] = r->tsc;
    int change = r->kind == K_CHANGE;
    if (change && r->tsc > s->sum[SUM_LAST_CHANGE])
        s->sum[SUM_LAST_CHANGE] = r->tsc;
    int32_t m = vcpu_number(s, r->key);
    if (m < 0)
        return -1;
    /* a walk meets records in file order: a later one is first only if its
     * TSC is smaller */
    First *f = &s->firsts[m];
    int first = r->tsc < f->time;
    if (first)
        *f = (First){r->key, r->tsc, r->off, change ? r->old : CONTINUE_OLD};
    /* a continue-running row matters only as its vCPU's first record */
    if (s->open_kept && (change || first)) {
        if (m >= MAX_KEPT_VCPUS) {
            stop_keeping(s);
            return 0;
        }
        keep_row(s, &s->keeps[keep_part(r->key, s->n_keeps)], r->tsc,
                 row_fields(!change, m, r->old, r->new));
    }
    return 0;
}

/* The walk of _walk.c's run() up to w->end, rows going to scan_row:
 * SCAN_MORE when w->end is before the end of the file (`len` bytes),
 * SCAN_DONE at the end of the file, SCAN_GENERIC if the file needs the
 * generic path, -1 out of memory. */
static int scan_walk(Scan *s, Walk *w, int64_t len)
{
    int r = 0;
    while (r == 0) {
        if (w->wend >= 0 && w->off >= w->wend)
            close_kept(s, w->tsc);
        leave_window_if_done(w);
        if (w->wend < 0) {
            r = enter_window(w);
            if (r == 0)
                keep_window(s, w, len);
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
        if (s->stop != NULL && __atomic_load_n(s->stop, __ATOMIC_RELAXED))
            return SCAN_GENERIC; /* nobody waits for the result any more */
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

/* The window headers at or after k * len / n for k = 1 .. n - 1 (at most
 * one per window), found by walking headers from the start, into at[]: how
 * many there are (the headers needing --lenient end the walk).  The pages
 * each header maps (with the kernel's fault-around, tens of kB) are given
 * back every RELEASE_STEP bytes, if `release`. */
static int split_points(const uint8_t *buf, int64_t len, int n, int release, int64_t *at)
{
    Walk w = {.buf = buf, .base = 0, .end = len, .off = 0, .wend = -1, .pcpu_tsc = NULL,
              .flags = 0};
    int64_t released = 0;
    int found = 0;
    for (int k = 1; k < n; k++) {
        while (w.off < len / n * k) {
            if (enter_window(&w) != 0 || w.wend > len)
                goto out;
            w.off = w.wend;
            w.wend = -1;
            if (release && w.off - released > RELEASE_STEP)
                release_mapped(buf, len, &released, w.off);
        }
        if (len - w.off < 12)
            break;
        if (found == 0 || at[found - 1] < w.off)
            at[found++] = w.off;
    }
out:
    if (release)
        release_mapped(buf, len, &released, w.off);
    return found;
}

/* b's kept rows after a's, their vCPUs renumbered as in a (number[v]: b's
 * vCPU v's number in a); if that cannot be, b's are not kept (the second
 * pass decodes them) */
static void join_kept(Scan *a, Scan *b, const int32_t *number)
{
    if (a->n_keeps == 0 || b->n_keeps != a->n_keeps)
        return;
    for (int64_t m = 0; m < b->table.n; m++)
        if (number[m] >= MAX_KEPT_VCPUS)
            return;
    for (int i = 0; i < a->n_keeps; i++) {
        Keep *ka = &a->keeps[i], *kb = &b->keeps[i];
        if (ka->n_more + 1 + kb->n_more > MAX_JOINED)
            return;
        int64_t n = ka->n_windows + kb->n_windows;
        if (n > ka->cap_windows) {
            KeptWindow *grown = realloc(ka->windows, (size_t)n * sizeof *grown);
            if (grown == NULL)
                return;
            ka->windows = grown;
            ka->cap_windows = n;
        }
    }
    const int32_t field = (int32_t)((MAX_KEPT_VCPUS - 1) << KEPT_VCPU_SHIFT);
    for (int i = 0; i < a->n_keeps; i++) {
        Keep *ka = &a->keeps[i], *kb = &b->keeps[i];
        for (int64_t r = 0; r < kb->n; r++) {
            int32_t fields = kb->rows[r].fields;
            if (fields == STEP_HIGH)
                continue;
            int32_t v = (fields & field) >> KEPT_VCPU_SHIFT;
            kb->rows[r].fields = (fields & ~field) | number[v] << KEPT_VCPU_SHIFT;
        }
        if (kb->n_windows > 0)
            memcpy(ka->windows + ka->n_windows, kb->windows,
                   (size_t)kb->n_windows * sizeof *kb->windows);
        ka->n_windows += kb->n_windows;
        /* the windows point into b's rows: a frees them */
        ka->more[ka->n_more] = kb->rows;
        ka->more_bytes[ka->n_more++] = kb->bytes;
        for (int j = 0; j < kb->n_more; j++) {
            ka->more[ka->n_more] = kb->more[j];
            ka->more_bytes[ka->n_more++] = kb->more_bytes[j];
        }
        kb->rows = NULL;
        kb->bytes = 0;
        kb->n_more = 0;
    }
    a->n_kept += b->n_kept;
}

/* join()'s outcomes besides 0 */
enum { JOIN_MISFIT = -1, JOIN_NO_MEMORY = -2 };

/* what the walk of the whole file would say when `a` walked up to the split
 * and `b` from there to the end: 0; JOIN_MISFIT, `a` untouched, if the halves
 * do not fit (a pcpu's TSC going back at the seam); JOIN_NO_MEMORY, `a` half
 * joined and of no more use, if memory runs out */
static int join(Scan *a, Scan *b)
{
    for (int p = 0; p < MAX_PCPUS; p++)
        if (a->pcpu_tsc[p] >= 0 && b->pcpu_first[p] >= 0 && b->pcpu_first[p] < a->pcpu_tsc[p])
            return JOIN_MISFIT;
    int32_t *number = malloc(((size_t)b->table.n + 1) * sizeof *number);
    if (number == NULL)
        return JOIN_MISFIT; /* nothing changed yet: walking the chunk again needs no more */
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
        if ((number[m] = keep_first(a, f->key, f->time, f->off, f->old)) < 0) {
            free(number);
            return JOIN_NO_MEMORY;
        }
    }
    join_kept(a, b, number);
    free(number);
    return 0;
}

#endif
