/*
 * The engine's accounting rules, shared by the engine's kernel (_kernel.c,
 * which runs them over the batches Python feeds it) and the xentrace fast
 * path (sources/xentrace/_job.c, which runs them over the rows it merges,
 * without handing them to Python first): one definition, so both account
 * every row alike.
 *
 * Domain time is accounted lazily: when an event touches domain d at time t,
 * [last[d], t) is charged to the state the domain was in after all events at
 * last[d].  So simultaneous changes (a context switch between two vCPUs of
 * one VM has one timestamp) never produce zero-length episodes.
 *
 * A Kernel points at the state arrays (their layout: runstate.engine.core);
 * whoever fills it in has checked their lengths and codes.
 */
#ifndef RUNSTATE_ENGINE_KERNEL_CORE_H
#define RUNSTATE_ENGINE_KERNEL_CORE_H

#include <Python.h>
#include <stdint.h>

enum { RUNNING = 0, RUNNABLE = 1, BLOCKED = 2, OFFLINE = 3, ABSENT = 4, UNKNOWN = 5, UNSEEN = 6 };
enum { D_LOST = 6, D_NONE = 7, N_DSTATES = 7, N_MBUCKETS = 5, M_LOST = 4 };
enum { LOSS_BEGIN = 10, LOSS_END = 11 };
/* counters in the globals array */
enum {
    G_DEPTH, G_EPOCH, G_EPOCH_START, G_WINDOW_START, G_MISMATCH, G_NO_CHANGE,
    G_LATE, G_UNBALANCED, G_IN_LOSS_EVENTS, G_LAST_TIME, N_GLOBALS
};

#define SUB_BITS 5
#define SUB (1 << SUB_BITS)          /* buckets per octave: 32, so <= 1/32 relative width */
#define LINEAR (2 * SUB)             /* values below 64 ns get exact buckets */
/* every positive int64 length: 57 octaves from 2^6 to 2^63 (a day of TSC cycles
 * exceeds 2^46, and a lumped last bucket would void the 1.6 % promise) */
#define N_BUCKETS (LINEAR + SUB * 57)

/* category of a member state in a domain's counts: run, runnable, blocked, unknown */
static const int8_t CATEGORY[7] = {0, 1, 2, 2, -1, 3, -1};
static const int8_t BY_MASK[8] = {D_NONE, 0, 1, 2, 3, 4, 5, 2};

typedef struct {
    /* members */
    int32_t *mdom;
    int8_t *mstate;
    int64_t *msince;
    int64_t *mns; /* [M][5] */
    Py_ssize_t n_members;
    /* domains */
    int32_t *dcount; /* [D][4] */
    int64_t *dlast;
    int64_t *dns; /* [D][7] */
    int8_t *ep_state;
    int64_t *ep_len;
    int64_t *ep_count; /* [D][7] */
    int64_t *ep_max;   /* [D][7] */
    uint32_t *ep_hist; /* [D][7][N_BUCKETS] */
    Py_ssize_t n_domains;
    int64_t *g;
    /* optional resolution table [E][M] */
    int8_t *resolve;
    Py_ssize_t n_epochs;
} Kernel;

/* the per-event helpers, inlined into the loop: about 3 % faster there */
#define HOT static inline __attribute__((always_inline))

HOT int bucket_of(int64_t v)
{
    if (v < LINEAR)
        return v < 0 ? 0 : (int)v;
    int msb = 63 - __builtin_clzll((unsigned long long)v);
    int shift = msb - SUB_BITS;
    int idx = LINEAR + (shift - 1) * SUB + (int)((v >> shift) - SUB);
    return idx >= N_BUCKETS ? N_BUCKETS - 1 : idx;
}

/* `known` (a constant where the helpers below are inlined): every member of
 * the domain is in a known state (running .. offline) and no loss window is
 * open, as in the rows of a trace without lost records whose members' states
 * before their first record are known (the xentrace fast path's): the
 * branches for the other cases are left out, the rules are the same. */
HOT int classify_as(const Kernel *k, Py_ssize_t d, int known)
{
    const int32_t *c = k->dcount + 4 * d;
    if (!known && c[0] + c[1] + c[2] + c[3] == 0)
        return D_NONE;
    if (!known && (k->g[G_DEPTH] > 0 || c[3] > 0))
        return D_LOST;
    return BY_MASK[(c[0] > 0) | (c[1] > 0) << 1 | (c[2] > 0) << 2];
}

HOT void end_episode(Kernel *k, Py_ssize_t d)
{
    int s = k->ep_state[d];
    if (s == D_NONE)
        return;
    Py_ssize_t ds = d * N_DSTATES + s;
    int64_t len = k->ep_len[d];
    k->ep_count[ds] += 1;
    if (len > k->ep_max[ds])
        k->ep_max[ds] = len;
    k->ep_hist[ds * N_BUCKETS + bucket_of(len)] += 1;
    k->ep_state[d] = D_NONE;
    k->ep_len[d] = 0;
}

/* charge [last[d], t) to the domain's current state */
HOT void close_domain_as(Kernel *k, Py_ssize_t d, int64_t t, int known)
{
    int64_t a = k->dlast[d];
    if (t <= a)
        return;
    k->dlast[d] = t;
    int s = classify_as(k, d, known);
    if (!known && s == D_NONE) {
        end_episode(k, d);
        return;
    }
    k->dns[d * N_DSTATES + s] += t - a;
    if (k->ep_state[d] != s) {
        end_episode(k, d);
        k->ep_state[d] = (int8_t)s;
    }
    k->ep_len[d] += t - a;
}

HOT void close_domain(Kernel *k, Py_ssize_t d, int64_t t)
{
    close_domain_as(k, d, t, 0);
}

HOT void close_member_as(Kernel *k, Py_ssize_t m, int64_t t, int known)
{
    int64_t a = k->msince[m];
    if (t <= a)
        return;
    k->msince[m] = t;
    int s = k->mstate[m];
    if (!known && (s == ABSENT || s == UNSEEN))
        return;
    int b = !known && (k->g[G_DEPTH] > 0 || s == UNKNOWN) ? M_LOST : s;
    k->mns[m * N_MBUCKETS + b] += t - a;
}

HOT void close_member(Kernel *k, Py_ssize_t m, int64_t t)
{
    close_member_as(k, m, t, 0);
}

static void close_all(Kernel *k, int64_t t)
{
    for (Py_ssize_t d = 0; d < k->n_domains; d++)
        close_domain(k, d, t);
    for (Py_ssize_t m = 0; m < k->n_members; m++)
        close_member(k, m, t);
}

HOT void set_member_state_as(Kernel *k, Py_ssize_t m, int from, int to, int known)
{
    int32_t *c = k->dcount + 4 * (Py_ssize_t)k->mdom[m];
    if (known || CATEGORY[from] >= 0)
        c[CATEGORY[from]] -= 1;
    if (known || CATEGORY[to] >= 0)
        c[CATEGORY[to]] += 1;
    k->mstate[m] = (int8_t)to;
}

HOT void set_member_state(Kernel *k, Py_ssize_t m, int from, int to)
{
    set_member_state_as(k, m, from, to, 0);
}

/* end of a lost-data window: each member's state is what its next record says */
static void start_epoch(Kernel *k, int64_t t)
{
    int64_t e = ++k->g[G_EPOCH];
    k->g[G_EPOCH_START] = t;
    const int8_t *row = (k->resolve && e < k->n_epochs) ? k->resolve + e * k->n_members : NULL;
    for (Py_ssize_t m = 0; m < k->n_members; m++) {
        int s = k->mstate[m];
        int r = row ? row[m] : -1;
        int to = r >= 0 ? r : ((s == ABSENT || s == UNSEEN) ? s : UNKNOWN);
        if (to != s)
            set_member_state(k, m, s, to);
    }
}

static void marker(Kernel *k, int64_t t, int code)
{
    close_all(k, t);
    if (code == LOSS_BEGIN) {
        k->g[G_DEPTH] += 1;
    } else if (code == LOSS_END) {
        if (k->g[G_DEPTH] <= 0) {
            k->g[G_UNBALANCED] += 1;
            return;
        }
        if (--k->g[G_DEPTH] == 0)
            start_epoch(k, t);
    }
}

/* a member's row: `known` as for classify_as */
HOT void member_event_as(Kernel *k, Py_ssize_t m, int64_t t, int old, int new, int known)
{
    close_member_as(k, m, t, known);
    close_domain_as(k, k->mdom[m], t, known);
    int cur = k->mstate[m];
    if (known) {
        k->g[G_MISMATCH] += cur != old;
        k->g[G_NO_CHANGE] += new == cur && old != new;
        set_member_state_as(k, m, cur, new, 1);
        return;
    }
    int64_t span = t - k->g[G_EPOCH_START];
    if (cur == UNSEEN) {
        /* one pass: first sighting; the member's own time since the epoch
         * start is known now, the domain's past is not rewritten */
        if (old != ABSENT && span > 0 && k->g[G_DEPTH] == 0) {
            k->mns[m * N_MBUCKETS + (old < ABSENT ? old : M_LOST)] += span;
            k->g[G_LATE] += 1;
        }
    } else if (cur == UNKNOWN) {
        /* one pass after lost data: move the member's lost time to what it was;
         * a row whose old state is UNKNOWN ends a span the trace cannot decide
         * (a lost switch), which stays lost */
        if (old < ABSENT && span > 0 && k->g[G_DEPTH] == 0) {
            k->mns[m * N_MBUCKETS + M_LOST] -= span;
            k->mns[m * N_MBUCKETS + old] += span;
        }
    } else if (k->g[G_DEPTH] > 0) {
        k->g[G_IN_LOSS_EVENTS] += 1;
    } else if (cur != old) {
        k->g[G_MISMATCH] += 1;
    }
    /* a row that declares old == new only asserts the state (e.g. Xen's
     * continue-running); one that declares a change which changes nothing is odd */
    if (new == cur && old != new)
        k->g[G_NO_CHANGE] += 1;
    set_member_state(k, m, cur, new);
}

static void member_event(Kernel *k, Py_ssize_t m, int64_t t, int old, int new)
{
    member_event_as(k, m, t, old, new, 0);
}

/* Rows run ahead of the one being accounted: the member's lines are fetched
 * PREFETCH_AHEAD rows early, its domain's (found through the member's line)
 * half as early.  Members and domains are picked by the data, so without
 * this every row waits for several cache misses in turn; measured on
 * bench/engine_bench.py, the prefetches make the loop 1.5x faster. */
enum { PREFETCH_AHEAD = 16 };
/* always inlined: GCC deems a function that only prefetches free of effects
 * and drops the calls to it */
#define PREFETCHER static inline __attribute__((always_inline)) void

PREFETCHER prefetch_member(const Kernel *k, int32_t m)
{
    if (m < 0 || m >= k->n_members)
        return; /* markers, and rows the loop will refuse when it gets there */
    __builtin_prefetch(k->msince + m);
    __builtin_prefetch(k->mns + (Py_ssize_t)m * N_MBUCKETS);
    __builtin_prefetch(k->mns + (Py_ssize_t)m * N_MBUCKETS + N_MBUCKETS - 1);
    __builtin_prefetch(k->mstate + m);
    __builtin_prefetch(k->mdom + m);
}

PREFETCHER prefetch_domain(const Kernel *k, int32_t m)
{
    if (m < 0 || m >= k->n_members)
        return;
    Py_ssize_t d = k->mdom[m];
    __builtin_prefetch(k->dlast + d);
    __builtin_prefetch(k->dcount + 4 * d);
    __builtin_prefetch(k->dns + N_DSTATES * d);
    __builtin_prefetch(k->dns + N_DSTATES * d + N_DSTATES - 1);
    __builtin_prefetch(k->ep_state + d);
    __builtin_prefetch(k->ep_len + d);
}

/* why run() stopped early: the row it refused */
enum { BAD_NONE, BAD_ORDER, BAD_MEMBER, BAD_CODE };

/* A row the loop must not account: 0 if the row is good.  Checked here, one
 * row at a time just before it is used, rather than in a separate pass over
 * the batch: the row is in cache now, and a second pass cost ~7 % of the
 * engine's time. */
static int bad_row(const Kernel *k, int64_t t, int64_t prev, int32_t m, int old, int new)
{
    if (t < prev)
        return BAD_ORDER; /* unsorted rows would be accounted silently wrong */
    if (m < -1 || m >= k->n_members)
        return BAD_MEMBER;
    if (m >= 0 ? ((unsigned)old > UNKNOWN || (unsigned)new > UNKNOWN)
               : (new != LOSS_BEGIN && new != LOSS_END))
        return BAD_CODE;
    return BAD_NONE;
}

/* Below this many members the state stays in the caches and prefetching
 * only costs instructions (measured: 12 % slower on a 42-vCPU Xen trace). */
enum { PREFETCH_MIN_MEMBERS = 4096 };

/* The loop, with or without prefetching (`ahead` is a constant at each call,
 * so each call compiles to its own loop).  Returns n, or the index of the
 * first row refused (*why says why); the rows before it have been accounted. */
static inline __attribute__((always_inline)) Py_ssize_t
run_rows(Kernel *k, Py_ssize_t n, const int64_t *time, const int32_t *member,
         const int8_t *old, const int8_t *new, int *why, int ahead)
{
    const int64_t start = k->g[G_WINDOW_START];
    int64_t prev = n > 0 ? time[0] : 0;
    for (Py_ssize_t i = 0; i < n && i < ahead; i++)
        prefetch_member(k, member[i]);
    for (Py_ssize_t i = 0; i < n && i < ahead / 2; i++)
        prefetch_domain(k, member[i]);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ahead && i + ahead < n)
            prefetch_member(k, member[i + ahead]);
        if (ahead && i + ahead / 2 < n)
            prefetch_domain(k, member[i + ahead / 2]);
        int32_t m = member[i];
        *why = bad_row(k, time[i], prev, m, old[i], new[i]);
        if (*why != BAD_NONE)
            return i;
        prev = time[i];
        int64_t t = time[i] < start ? start : time[i];
        if (m < 0)
            marker(k, t, new[i]);
        else
            member_event(k, m, t, old[i], new[i]);
    }
    if (n > 0 && time[n - 1] > k->g[G_LAST_TIME])
        k->g[G_LAST_TIME] = time[n - 1];
    return n;
}

/* Account rows [0, n): see run_rows. */
static inline Py_ssize_t run(Kernel *k, Py_ssize_t n, const int64_t *time, const int32_t *member,
                      const int8_t *old, const int8_t *new, int *why)
{
    if (k->n_members >= PREFETCH_MIN_MEMBERS)
        return run_rows(k, n, time, member, old, new, why, PREFETCH_AHEAD);
    return run_rows(k, n, time, member, old, new, why, 0);
}

#endif
