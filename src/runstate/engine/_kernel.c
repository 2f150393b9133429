/*
 * The engine's inner loop: member state changes -> domain runstate accounting.
 *
 * Why C: every event updates one member and one domain, and which domain an
 * event touches is data-dependent, so numpy would need a sort by domain per
 * batch (about 1 s for 10 M rows).  This loop does the same work at tens of
 * millions of events per second.  All state lives in numpy arrays owned by
 * runstate.engine.core.Engine; this file only holds the loop, so a snapshot is
 * a copy of those arrays.  The slow, obviously correct version of the same
 * rules is tests/reference.py.
 *
 * Domain time is accounted lazily: when an event touches domain d at time t,
 * [last[d], t) is charged to the state the domain was in after all events at
 * last[d].  So simultaneous changes (a context switch between two vCPUs of
 * one VM has one timestamp) never produce zero-length episodes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../kernel_abi.h"

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
    Py_buffer views[24];
    int n_views;
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

HOT int classify(const Kernel *k, Py_ssize_t d)
{
    const int32_t *c = k->dcount + 4 * d;
    if (c[0] + c[1] + c[2] + c[3] == 0)
        return D_NONE;
    if (k->g[G_DEPTH] > 0 || c[3] > 0)
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
HOT void close_domain(Kernel *k, Py_ssize_t d, int64_t t)
{
    int64_t a = k->dlast[d];
    if (t <= a)
        return;
    k->dlast[d] = t;
    int s = classify(k, d);
    if (s == D_NONE) {
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

HOT void close_member(Kernel *k, Py_ssize_t m, int64_t t)
{
    int64_t a = k->msince[m];
    if (t <= a)
        return;
    k->msince[m] = t;
    int s = k->mstate[m];
    if (s == ABSENT || s == UNSEEN)
        return;
    int b = (k->g[G_DEPTH] > 0 || s == UNKNOWN) ? M_LOST : s;
    k->mns[m * N_MBUCKETS + b] += t - a;
}

static void close_all(Kernel *k, int64_t t)
{
    for (Py_ssize_t d = 0; d < k->n_domains; d++)
        close_domain(k, d, t);
    for (Py_ssize_t m = 0; m < k->n_members; m++)
        close_member(k, m, t);
}

HOT void set_member_state(Kernel *k, Py_ssize_t m, int from, int to)
{
    int32_t *c = k->dcount + 4 * (Py_ssize_t)k->mdom[m];
    if (CATEGORY[from] >= 0)
        c[CATEGORY[from]] -= 1;
    if (CATEGORY[to] >= 0)
        c[CATEGORY[to]] += 1;
    k->mstate[m] = (int8_t)to;
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

static void member_event(Kernel *k, Py_ssize_t m, int64_t t, int old, int new)
{
    close_member(k, m, t);
    close_domain(k, k->mdom[m], t);
    int cur = k->mstate[m];
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
static Py_ssize_t run(Kernel *k, Py_ssize_t n, const int64_t *time, const int32_t *member,
                      const int8_t *old, const int8_t *new, int *why)
{
    if (k->n_members >= PREFETCH_MIN_MEMBERS)
        return run_rows(k, n, time, member, old, new, why, PREFETCH_AHEAD);
    return run_rows(k, n, time, member, old, new, why, 0);
}

/* ---- argument plumbing ------------------------------------------------- */
/* Every array is checked for element type, contiguity and length, and every
 * code of the state the loop uses as an index (states, member and domain
 * numbers) for its range, before the loop runs; each event row is checked by
 * the loop just before it is used (bad_row).  A caller's mistake is a
 * ValueError, never a stray write (the rows before a refused one are
 * accounted, as if fed alone). */

static void release(Kernel *k)
{
    for (int i = 0; i < k->n_views; i++)
        PyBuffer_Release(&k->views[i]);
    k->n_views = 0;
}

static void *view(Kernel *k, PyObject *obj, const char *name, int kind, Py_ssize_t itemsize,
                  Py_ssize_t *count, int writable)
{
    if (k->n_views >= (int)(sizeof k->views / sizeof k->views[0])) {
        PyErr_SetString(PyExc_ValueError, "too many arrays");
        return NULL;
    }
    void *p = abi_view(&k->views[k->n_views], obj, name, kind, itemsize, writable, count);
    if (p != NULL)
        k->n_views++;
    return p;
}

static int expect_len(const char *name, Py_ssize_t got, Py_ssize_t want)
{
    if (got == want)
        return 0;
    PyErr_Format(PyExc_ValueError, "%s has %zd elements, expected %zd", name, got, want);
    return -1;
}

static int codes_in_range(const char *name, const int8_t *a, Py_ssize_t n, int lo, int hi)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a[i] < lo || a[i] > hi) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] = %d is not a valid code (%d..%d)", name, i,
                         (int)a[i], lo, hi);
            return -1;
        }
    }
    return 0;
}

/* state: (mdom, mstate, msince, mns, dcount, dlast, dns, ep_state, ep_len,
 *         ep_count, ep_max, ep_hist, globals) */
static int bind_state(Kernel *k, PyObject *state)
{
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 13) {
        PyErr_SetString(PyExc_ValueError, "state must be a 13-tuple of arrays");
        return -1;
    }
#define ITEM(i) PyTuple_GET_ITEM(state, i)
    Py_ssize_t nm, nd, ng, c[10];
    if (!(k->mdom = view(k, ITEM(0), "mdom", AK_SIGNED, 4, &nm, 0)) ||
        !(k->mstate = view(k, ITEM(1), "mstate", AK_SIGNED, 1, &c[0], 1)) ||
        !(k->msince = view(k, ITEM(2), "msince", AK_SIGNED, 8, &c[1], 1)) ||
        !(k->mns = view(k, ITEM(3), "mns", AK_SIGNED, 8, &c[2], 1)) ||
        !(k->dcount = view(k, ITEM(4), "dcount", AK_SIGNED, 4, &c[3], 1)) ||
        !(k->dlast = view(k, ITEM(5), "dlast", AK_SIGNED, 8, &nd, 1)) ||
        !(k->dns = view(k, ITEM(6), "dns", AK_SIGNED, 8, &c[4], 1)) ||
        !(k->ep_state = view(k, ITEM(7), "ep_state", AK_SIGNED, 1, &c[5], 1)) ||
        !(k->ep_len = view(k, ITEM(8), "ep_len", AK_SIGNED, 8, &c[6], 1)) ||
        !(k->ep_count = view(k, ITEM(9), "ep_count", AK_SIGNED, 8, &c[7], 1)) ||
        !(k->ep_max = view(k, ITEM(10), "ep_max", AK_SIGNED, 8, &c[8], 1)) ||
        !(k->ep_hist = view(k, ITEM(11), "ep_hist", AK_UNSIGNED, 4, &c[9], 1)) ||
        !(k->g = view(k, ITEM(12), "globals", AK_SIGNED, 8, &ng, 1)))
        return -1;
#undef ITEM
    if (expect_len("mstate", c[0], nm) < 0 || expect_len("msince", c[1], nm) < 0 ||
        expect_len("mns", c[2], nm * N_MBUCKETS) < 0 ||
        expect_len("dcount", c[3], nd * 4) < 0 || expect_len("dns", c[4], nd * N_DSTATES) < 0 ||
        expect_len("ep_state", c[5], nd) < 0 || expect_len("ep_len", c[6], nd) < 0 ||
        expect_len("ep_count", c[7], nd * N_DSTATES) < 0 ||
        expect_len("ep_max", c[8], nd * N_DSTATES) < 0 ||
        expect_len("ep_hist", c[9], nd * N_DSTATES * N_BUCKETS) < 0 ||
        expect_len("globals", ng, N_GLOBALS) < 0)
        return -1;
    for (Py_ssize_t m = 0; m < nm; m++) {
        if (k->mdom[m] < 0 || k->mdom[m] >= nd) {
            PyErr_Format(PyExc_ValueError, "mdom[%zd] = %d names none of the %zd domains", m,
                         (int)k->mdom[m], nd);
            return -1;
        }
    }
    if (codes_in_range("mstate", k->mstate, nm, RUNNING, UNSEEN) < 0 ||
        codes_in_range("ep_state", k->ep_state, nd, 0, D_NONE) < 0)
        return -1;
    k->n_members = nm;
    k->n_domains = nd;
    return 0;
}

/* the error for the row run() refused */
static void refuse_row(int why, Py_ssize_t i, const int64_t *time, const int32_t *member,
                       Py_ssize_t n_members)
{
    if (why == BAD_ORDER)
        PyErr_Format(PyExc_ValueError, "events go back in time at row %zd: %lld after %lld", i,
                     (long long)time[i], (long long)time[i - 1]);
    else if (why == BAD_MEMBER)
        PyErr_Format(PyExc_ValueError, "event %zd names member %d of %zd", i, (int)member[i],
                     n_members);
    else
        PyErr_Format(PyExc_ValueError, "event %zd has an invalid state code", i);
}

static PyObject *py_feed(PyObject *self, PyObject *args)
{
    PyObject *state, *t_obj, *m_obj, *o_obj, *n_obj, *r_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO", &state, &t_obj, &m_obj, &o_obj, &n_obj, &r_obj))
        return NULL;
    Kernel k;
    memset(&k, 0, sizeof k);
    Py_ssize_t n, n2, n3, n4;
    const int64_t *time;
    const int32_t *member;
    const int8_t *old, *new;
    if (bind_state(&k, state) < 0 ||
        !(time = view(&k, t_obj, "time", AK_SIGNED, 8, &n, 0)) ||
        !(member = view(&k, m_obj, "member", AK_SIGNED, 4, &n2, 0)) ||
        !(old = view(&k, o_obj, "old_state", AK_SIGNED, 1, &n3, 0)) ||
        !(new = view(&k, n_obj, "new_state", AK_SIGNED, 1, &n4, 0)))
        goto fail;
    if (expect_len("member", n2, n) < 0 || expect_len("old_state", n3, n) < 0 ||
        expect_len("new_state", n4, n) < 0)
        goto fail;
    if (r_obj != Py_None) {
        Py_ssize_t nr;
        if (!(k.resolve = view(&k, r_obj, "resolve", AK_SIGNED, 1, &nr, 0)))
            goto fail;
        if (k.n_members == 0 ? nr != 0 : nr % k.n_members != 0) {
            PyErr_Format(PyExc_ValueError,
                         "resolve has %zd elements, not a whole number of rows of %zd members",
                         nr, k.n_members);
            goto fail;
        }
        if (codes_in_range("resolve", k.resolve, nr, -1, UNSEEN) < 0)
            goto fail;
        k.n_epochs = k.n_members ? nr / k.n_members : 0;
    }
    int why = BAD_NONE;
    Py_ssize_t done;
    Py_BEGIN_ALLOW_THREADS
    done = run(&k, n, time, member, old, new, &why);
    Py_END_ALLOW_THREADS
    if (done < n) {
        refuse_row(why, done, time, member, k.n_members);
        goto fail;
    }
    release(&k);
    Py_RETURN_NONE;
fail:
    release(&k);
    return NULL;
}

static PyObject *py_close_all(PyObject *self, PyObject *args)
{
    PyObject *state;
    long long t;
    (void)self;
    if (!PyArg_ParseTuple(args, "OL", &state, &t))
        return NULL;
    Kernel k;
    memset(&k, 0, sizeof k);
    if (bind_state(&k, state) < 0) {
        release(&k);
        return NULL;
    }
    close_all(&k, (int64_t)t);
    release(&k);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"feed", py_feed, METH_VARARGS, "feed(state, time, member, old, new, resolve) -> None"},
    {"close_all", py_close_all, METH_VARARGS, "close_all(state, t): account every domain up to t"},
    {NULL, NULL, 0, NULL, },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernel", "domain runstate accounting loop", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* the codes Python shares with this loop (runstate.model.states, engine.core) */
static int add_constants(PyObject *mod)
{
    return ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
           ABI_CONST(mod, N_BUCKETS) < 0 || ABI_CONST(mod, N_GLOBALS) < 0 ||
           ABI_CONST(mod, N_DSTATES) < 0 || ABI_CONST(mod, N_MBUCKETS) < 0 ||
           ABI_CONST(mod, RUNNING) < 0 || ABI_CONST(mod, RUNNABLE) < 0 ||
           ABI_CONST(mod, BLOCKED) < 0 || ABI_CONST(mod, OFFLINE) < 0 ||
           ABI_CONST(mod, ABSENT) < 0 || ABI_CONST(mod, UNKNOWN) < 0 ||
           ABI_CONST(mod, UNSEEN) < 0 || ABI_CONST(mod, D_LOST) < 0 ||
           ABI_CONST(mod, D_NONE) < 0 || ABI_CONST(mod, M_LOST) < 0 ||
           ABI_CONST(mod, LOSS_BEGIN) < 0 || ABI_CONST(mod, LOSS_END) < 0 ||
           ABI_CONST(mod, G_DEPTH) < 0 || ABI_CONST(mod, G_EPOCH) < 0 ||
           ABI_CONST(mod, G_EPOCH_START) < 0 || ABI_CONST(mod, G_WINDOW_START) < 0 ||
           ABI_CONST(mod, G_MISMATCH) < 0 || ABI_CONST(mod, G_NO_CHANGE) < 0 ||
           ABI_CONST(mod, G_LATE) < 0 || ABI_CONST(mod, G_UNBALANCED) < 0 ||
           ABI_CONST(mod, G_IN_LOSS_EVENTS) < 0 || ABI_CONST(mod, G_LAST_TIME) < 0
               ? -1
               : 0;
}

PyMODINIT_FUNC PyInit__kernel(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && add_constants(mod) < 0)
        Py_CLEAR(mod);
    return mod;
}
