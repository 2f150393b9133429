/* The per-event scheduler state machine of sched.py, for speed.
 *
 * walk(events, tasks, cpus, out, n_out_start, counters, registry)
 *
 * events: (time i64, cpu i32, kind i8, pid i32, other_pid i32, prev_state i64,
 *          actor i32)
 *         pids as recorded (0: the CPU's idle task; -1 none); each is looked up
 *         in registry's pid table (pid -> dense task index; the idle task of
 *         CPU c has its own index, cpus' idle_task).  other_pid counts for
 *         switches only.  actor: the pid current on the CPU when the event was
 *         recorded, where known.  A cpu of -1 counts as the last CPU (numpy's
 *         index rule, which the Python mapping this replaces followed).
 * tasks:  (state i8, grouped u8, exiting u8, wakeup i64, deferred i64, last_event i64,
 *          span_from i64, uncertain i64[3 * n_tasks])
 *         state: -1 unknown, 0 running, 1 runnable, 2 blocked, 4 absent,
 *         5 in an undecidable span (its rows carry the engine's UNKNOWN).
 *         deferred: index in out of a span-end row whose new state is open.
 *         last_event: time of the task's last state change.
 *         span_from: start of an open span not yet added to `uncertain`.
 *         uncertain: ns of undecidable span per task and cause (WHY_*).
 * cpus:   (curr i64, last_switch i64, idle_task i64, seen u8)  curr: -1 none,
 *         -2 vacated; seen: set for every CPU with an event.
 * out:    (time i64, task i32, old i8, new i8), rows [0, n_out_start) are carried
 *         over from the previous call; new rows are appended.
 * counters: (count i64[N], first_time i64[N], globals i64[4]) globals:
 *         [0] last time, [1] floor (rows may not precede it), [2] switches,
 *         [3] number of open deferred rows, [4] 1 for a pid-filtered trace.
 *
 * registry: (pid_table i32, member i32[n_tasks], fresh i32[n_tasks])
 *         member: the task's member, -1 none yet; a task whose first row this
 *         call emits while it has none is listed in fresh (in order of that
 *         row) and marked -2 there, for the caller to register.
 *
 * Returns (rows in out, tasks in fresh), or raises if out is too small (the
 * caller sizes it at carried + 8 rows per event).
 *
 * bounds(cpu, kind, pid, other_pid, actor) -> the min and max of each column,
 * and 1 + the largest pid a lookup needs (the pid table's size).
 * new_pids(kind, (pid, other_pid, actor), pid_table) -> the pids > 0 the table
 * does not have yet, per column (see there).
 * split(rows, n, cut, all, floor, member, deferred, batch) hands on rows: those
 * before `cut` (every row with all=1) go to batch (time clamped to >= floor,
 * task -> member, rows of tasks with no member dropped, stable-sorted by time);
 * the others move to the front of rows, and deferred row indices follow them.
 * Returns (batch rows, rows kept).  The rules and their reasons
 * are documented in sched.py.
 * first_rows(...): exact mode's first pass over the batches (schedfirst.h).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "../../kernel_abi.h"
#include "schedfirst.h"

enum { RUNNING = 0, RUNNABLE = 1, BLOCKED = 2, ABSENT = 4, UNKNOWN = -1, SPAN = 5 };
/* why a span cannot be decided: a switch was not recorded, or a wakeup; LATE:
 * the span began before rows already handed on (they show the state believed
 * then), so that part is uncertain but not shown as lost */
enum { WHY_SWITCH = 0, WHY_WAKEUP = 1, WHY_LATE = 2, N_WHY = 3 };
enum { K_SWITCH = 0, K_WAKEUP = 1, K_WAKEUP_NEW = 2, K_EXIT = 3, K_FORK = 4, K_SEEN = 5 };
enum { NONE = -1, VACATED = -2 };
/* counter order: must match sched.py COUNTERS */
enum {
    C_BREAKS, C_REPAIRS, C_UNPROVEN, C_OUT_NOT_RUNNING, C_IN_NOT_RUNNABLE,
    C_WAKEUP_RUNNING, C_AFTER_EXIT, C_BACKWARDS, C_START_UNKNOWN, N_COUNTERS
};
enum { G_LAST, G_FLOOR, G_SWITCHES, G_OPEN, G_FILTERED, N_G };

typedef struct {
    const int64_t *time;
    const int32_t *cpu;
    const int8_t *kind;
    const int32_t *pid;
    const int32_t *other;
    const int64_t *pstate;
    const int32_t *actor;
    const int32_t *table;
    Py_ssize_t n_table;
    int32_t *member;
    int32_t *fresh;
    Py_ssize_t n_fresh;
    uint8_t *seen;
    Py_ssize_t n;
    int8_t *state;
    const uint8_t *grouped;
    uint8_t *exiting;
    int64_t *wakeup;
    int64_t *deferred;
    int64_t *last_event;
    int64_t *span_from;
    int64_t *uncertain;
    Py_ssize_t n_tasks;
    int64_t *curr;
    int64_t *last_switch;
    const int64_t *idle;
    Py_ssize_t n_cpus;
    int64_t *otime;
    int32_t *otask;
    int8_t *oold;
    int8_t *onew;
    Py_ssize_t n_out, cap_out;
    int64_t *count;
    int64_t *first;
    int64_t *g;
    Py_buffer views[32];
    int n_views;
} W;

static void bump(W *w, int c, int64_t t)
{
    if (w->count[c]++ == 0)
        w->first[c] = t;
}

static int emit(W *w, int64_t t, Py_ssize_t task, int old, int new)
{
    if (w->n_out >= w->cap_out)
        return -1; /* the output buffer is too small: raised once the GIL is back */
    Py_ssize_t i = w->n_out++;
    if (task >= 0 && w->member[task] == -1) {
        /* its first row without a member: the caller registers it */
        w->member[task] = -2;
        w->fresh[w->n_fresh++] = (int32_t)task;
    }
    w->otime[i] = t;
    w->otask[i] = (int32_t)task;
    w->oold[i] = (int8_t)old;
    w->onew[i] = (int8_t)new;
    return 0;
}

static void resolve(W *w, Py_ssize_t task, int before)
{
    int64_t row = w->deferred[task];
    w->deferred[task] = -1;
    w->onew[row] = (int8_t)(before == RUNNING ? RUNNABLE : before);
    w->g[G_OPEN] -= 1;
    bump(w, C_REPAIRS, w->otime[row]);
}

/* an open span end (see defer) that no wakeup decided: the span goes on */
static void go_on(W *w, Py_ssize_t task)
{
    int64_t row = w->deferred[task];
    w->onew[row] = SPAN;
    w->deferred[task] = -1;
    w->g[G_OPEN] -= 1;
    w->state[task] = SPAN;
    w->span_from[task] = w->otime[row];
    bump(w, C_UNPROVEN, w->otime[row]);
}

/* the task leaves an undecidable span at t: its time since an open start is uncertain */
static void close_span(W *w, Py_ssize_t task, int64_t t)
{
    if (w->span_from[task] != INT64_MIN && t > w->span_from[task])
        w->uncertain[N_WHY * task + WHY_SWITCH] += t - w->span_from[task];
    w->span_from[task] = INT64_MIN;
}

/* move task to `new`; `expected` is the state the event implies it was in */
static int transition(W *w, Py_ssize_t task, int64_t t, int expected, int new)
{
    int old = w->state[task];
    if (old == UNKNOWN && w->deferred[task] >= 0) {
        /* only a wakeup proves a switched-out task had blocked; a switch-in does
         * not prove it stayed runnable (its wakeup may have been lost): the span
         * goes on up to here */
        go_on(w, task);
        old = SPAN;
    }
    if (old == SPAN) {
        close_span(w, task, t);
    } else if (old == UNKNOWN) {
        old = expected;
    } else if (old != expected) {
        if (old == ABSENT)
            bump(w, C_AFTER_EXIT, t);
        else if (expected == RUNNING)
            bump(w, C_OUT_NOT_RUNNING, t);
        else
            bump(w, C_IN_NOT_RUNNABLE, t);
    }
    w->state[task] = (int8_t)new;
    if (old != new)
        w->last_event[task] = t;
    if (old != new && w->grouped[task])
        return emit(w, t, task, old, new);
    return 0;
}

static int wake(W *w, Py_ssize_t task, int64_t t, int new_task)
{
    int old = w->state[task];
    if (old == RUNNING || old == RUNNABLE) {
        if (old == RUNNING && !new_task)
            bump(w, C_WAKEUP_RUNNING, t);
        return 0;
    }
    if (old == SPAN) {
        close_span(w, task, t);
    } else if (old == UNKNOWN) {
        old = new_task ? ABSENT : BLOCKED;
        if (w->deferred[task] >= 0) {
            old = BLOCKED;
            resolve(w, task, old);
        }
    } else if (old == ABSENT && !new_task) {
        bump(w, C_AFTER_EXIT, t);
    }
    /* only the wakeup that made it runnable bounds a lost switch-in: a later
     * one (of a task already running, its switch-in lost) proves nothing */
    w->state[task] = RUNNABLE;
    w->last_event[task] = t;
    w->wakeup[task] = t;
    if (w->grouped[task])
        return emit(w, t, task, old, RUNNABLE);
    return 0;
}

/*
 * The task's state from `from` to `until` cannot be decided from the trace:
 * put it into a span (rows carry the engine's UNKNOWN, so it shows as lost)
 * and count the span's length under `why`.  The caller ends the span at
 * `until` with the state the trace proves there.
 */
static int open_span(W *w, Py_ssize_t task, int64_t from, int64_t until, int why)
{
    int old = w->state[task];
    if (old == UNKNOWN && w->deferred[task] >= 0) {
        go_on(w, task); /* still open from an earlier repair: that span goes on */
        old = SPAN;
    }
    if (old == SPAN) {
        close_span(w, task, from);
    } else if (old == UNKNOWN) {
        old = SPAN; /* first sighting: nothing known before either */
    }
    if (w->grouped[task] && until > from)
        w->uncertain[N_WHY * task + why] += until - from;
    w->state[task] = SPAN;
    w->last_event[task] = from;
    if (w->grouped[task])
        return emit(w, from, task, old, SPAN);
    return 0;
}

/* cur left the CPU at an unknown moment in [at, t]; its state after is told
 * by its next event: the span-end row at t stays open until then */
static int defer(W *w, Py_ssize_t task, int64_t at, int64_t t, int count)
{
    if (!w->grouped[task]) {
        w->state[task] = UNKNOWN;
        if (count)
            bump(w, C_REPAIRS, at);
        return 0;
    }
    if (open_span(w, task, at, t, WHY_SWITCH) < 0)
        return -1;
    w->state[task] = UNKNOWN;
    w->deferred[task] = w->n_out;
    w->g[G_OPEN] += 1;
    return emit(w, t, task, SPAN, UNKNOWN);
}

/* the start of a span of `task`, no earlier than the rows already handed on
 * (the part before them is counted as WHY_LATE) and no later than `hi` */
static int64_t bound(const W *w, int64_t v, int64_t hi)
{
    if (v == INT64_MIN || v < w->g[G_FLOOR])
        v = w->g[G_FLOOR];
    return v > hi ? hi : v;
}

static int64_t clamp(W *w, Py_ssize_t task, int64_t v, int64_t hi)
{
    int64_t floor = w->g[G_FLOOR];
    if (v != INT64_MIN && v < floor && w->grouped[task])
        w->uncertain[N_WHY * task + WHY_LATE] += (floor < hi ? floor : hi) - v;
    return bound(w, v, hi);
}

/* a task seen switching in on one CPU or out on another while believed current
 * on `cpu`: it left `cpu` unseen, whose next switch is then no break */
static void vacate(W *w, Py_ssize_t task, Py_ssize_t cpu)
{
    for (Py_ssize_t c = 0; c < w->n_cpus; c++) {
        if (c != cpu && w->curr[c] == task)
            w->curr[c] = VACATED;
    }
}

/*
 * The switch cur -> prev on CPU c was not recorded: it happened at some moment
 * in [at, t], where `at` is the latest event proving it had not happened yet
 * (the CPU's previous switch, prev's wakeup or last switch-out) and t proves it
 * had (prev's switch-out).  cur ran until then; prev waited for it.  Both are
 * undecidable over that span; prev from its last event on if it was believed
 * blocked (its wakeup was lost too) or running elsewhere (it left unseen).
 */
static int repair(W *w, Py_ssize_t c, int64_t cur, Py_ssize_t prev, int64_t t)
{
    /* a pid-filtered trace misses the switches between untraced tasks: only
     * breaks that a traced task reveals are anomalies there */
    int count = !w->g[G_FILTERED] || w->grouped[prev];
    if (count)
        bump(w, C_BREAKS, t);
    int is_idle = prev == w->idle[c];
    int64_t at = w->last_switch[c] + 1;
    if (w->wakeup[prev] != INT64_MIN && w->wakeup[prev] + 1 > at)
        at = w->wakeup[prev] + 1;
    if (!is_idle && w->last_event[prev] != INT64_MIN && w->last_event[prev] > at)
        at = w->last_event[prev];
    int ps = w->state[prev];
    int64_t from = at;
    if (!is_idle && (ps == BLOCKED || ps == RUNNING) && w->last_event[prev] != INT64_MIN &&
        w->last_event[prev] < at)
        from = w->last_event[prev];
    from = clamp(w, prev, from, t);
    int cur_running = cur >= 0 && w->state[cur] == RUNNING;
    at = cur_running ? clamp(w, (Py_ssize_t)cur, at, t) : bound(w, at, t);
    if (!is_idle && ps == RUNNING)
        vacate(w, prev, c);
    int rc = 0;
    if (cur == VACATED || w->state[cur] != RUNNING) {
        /* cur was seen leaving (elsewhere) already */
        if (count)
            bump(w, C_REPAIRS, t);
    } else if (cur == w->idle[c] || w->exiting[cur]) {
        if (count)
            bump(w, C_REPAIRS, t);
        rc = open_span(w, (Py_ssize_t)cur, at, t, WHY_SWITCH);
        if (rc == 0)
            rc = transition(w, (Py_ssize_t)cur, t, SPAN, cur == w->idle[c] ? BLOCKED : ABSENT);
    } else {
        rc = defer(w, (Py_ssize_t)cur, at, t, count);
    }
    if (rc < 0)
        return rc;
    if (count && !is_idle && ps == BLOCKED) {
        /* its wakeup was lost too */
        bump(w, C_START_UNKNOWN, t);
    }
    /* the caller's switch-out of prev at t ends its span */
    return open_span(w, prev, from, t, ps == BLOCKED ? WHY_WAKEUP : WHY_SWITCH);
}

/* a switch-in of a task believed blocked: its wakeup was not recorded, so
 * when it became runnable, after its last event, cannot be decided */
static int lost_wakeup(W *w, Py_ssize_t task, int64_t t)
{
    bump(w, C_IN_NOT_RUNNABLE, t);
    return open_span(w, task, clamp(w, task, w->last_event[task], t), t, WHY_WAKEUP);
}

/* the first switch on a CPU that involves no idle task: the CPU was busy */
static int note_busy(W *w, Py_ssize_t idle, int64_t t)
{
    w->state[idle] = BLOCKED;
    w->last_event[idle] = t;
    if (w->grouped[idle])
        return emit(w, t, idle, BLOCKED, BLOCKED);
    return 0;
}

/*
 * An event other than a switch, recorded on CPU c with actor X: X was running
 * on c then.  If c's current task is another, the switch to X was lost before
 * this moment: the repair's spans end here, not at X's next switch-out.
 */
static int first_sighting(W *w, Py_ssize_t c, Py_ssize_t x, int64_t t);

static int seen_running(W *w, Py_ssize_t c, Py_ssize_t x, int64_t t)
{
    if (x < 0 || x >= w->n_tasks || c < 0 || c >= w->n_cpus)
        return 0;
    int64_t cur = w->curr[c];
    if (cur == x)
        return 0;
    if (cur == NONE)
        return first_sighting(w, c, x, t);
    if (repair(w, c, cur, x, t) < 0 ||
        transition(w, x, t, SPAN, RUNNING) < 0)
        return -1;
    w->curr[c] = x;
    w->last_switch[c] = t;
    return 0;
}

/*
 * X runs on CPU c, of which nothing is known yet (the trace's start, or lost
 * data just ended).  X's own state says the rest: unknown (its first event, or
 * its first since the loss): it was running since, as a switch-out would say;
 * believed runnable, blocked or running on another CPU: its switch-in on c (a
 * sleeper's wakeup too) was not recorded, after its last event, so that span is
 * undecidable; in a span: the span ends here.  A timer event (a sched tick) so
 * ends the unknown state of a task spinning alone on a CPU, which has no other
 * event for as long as it spins.
 */
static int first_sighting(W *w, Py_ssize_t c, Py_ssize_t x, int64_t t)
{
    int st = w->state[x];
    if (x == w->idle[c]) {
        /* the CPU idles: nothing to decide for a task */
    } else if (st == UNKNOWN && w->deferred[x] < 0) {
        w->state[x] = RUNNING;
        w->last_event[x] = t;
        if (w->grouped[x] && emit(w, t, x, RUNNING, RUNNING) < 0)
            return -1;
    } else {
        if (st == RUNNABLE || st == BLOCKED || st == ABSENT || st == RUNNING) {
            if (!w->g[G_FILTERED] || w->grouped[x]) {
                bump(w, st == RUNNING ? C_IN_NOT_RUNNABLE : C_BREAKS, t);
                if (st != RUNNING)
                    bump(w, C_REPAIRS, t);
                if (st == BLOCKED || st == ABSENT)
                    bump(w, C_START_UNKNOWN, t);
            }
            if (st == RUNNING)
                vacate(w, x, c); /* it left the other CPU unseen */
            int64_t from = w->last_event[x];
            if (st == RUNNABLE && w->wakeup[x] != INT64_MIN && w->wakeup[x] > from)
                from = w->wakeup[x];
            if (open_span(w, x, clamp(w, x, from, t), t,
                          st == BLOCKED || st == ABSENT ? WHY_WAKEUP : WHY_SWITCH) < 0)
                return -1;
        }
        if (transition(w, x, t, SPAN, RUNNING) < 0)
            return -1;
    }
    w->curr[c] = x;
    /* a later lost switch on c came after this sighting; a CPU never seen switching
     * stays so (its idle share is unknown) */
    if (w->last_switch[c] != INT64_MIN)
        w->last_switch[c] = t;
    return 0;
}

/* the dense task of a recorded pid: 0 is the CPU's idle task where `idle_ok` */
static Py_ssize_t dense(const W *w, int32_t pid, int idle_ok, Py_ssize_t idle)
{
    if (pid > 0)
        return pid < w->n_table ? w->table[pid] : -1;
    return pid == 0 && idle_ok ? idle : -1;
}

static int run(W *w)
{
    int64_t last = w->g[G_LAST];
    for (Py_ssize_t i = 0; i < w->n; i++) {
        int64_t t = w->time[i];
        if (t < last) {
            bump(w, C_BACKWARDS, t);
            t = last;
        }
        last = t;
        int kind = w->kind[i];
        Py_ssize_t c = w->cpu[i];
        Py_ssize_t slot = c < 0 ? c + w->n_cpus : c;
        Py_ssize_t idle = -1;
        if (slot >= 0 && slot < w->n_cpus) {
            idle = (Py_ssize_t)w->idle[slot];
            w->seen[slot] = 1;
        }
        if (kind != K_SWITCH && seen_running(w, c, dense(w, w->actor[i], 1, idle), t) < 0)
            return -1;
        Py_ssize_t a = dense(w, w->pid[i], kind == K_SWITCH, idle);
        if (a < 0 || a >= w->n_tasks)
            continue;
        if (kind == K_SWITCH) {
            Py_ssize_t b = dense(w, w->other[i], 1, idle);
            if (c < 0 || c >= w->n_cpus || b < 0 || b >= w->n_tasks)
                continue;
            int64_t cur = w->curr[c];
            if (cur != NONE && cur != a && repair(w, c, cur, a, t) < 0)
                return -1;
            if (a != idle && b != idle && w->state[idle] == UNKNOWN &&
                w->deferred[idle] < 0 && note_busy(w, idle, t) < 0)
                return -1;
            int64_t ps = w->pstate[i];
            int after = (ps & 0xff) == 0 ? RUNNABLE : ((ps & 0x30) ? ABSENT : BLOCKED);
            if (a == w->idle[c])
                after = BLOCKED;
            if (transition(w, a, t, RUNNING, after) < 0)
                return -1;
            if (b != idle && w->state[b] == RUNNING) {
                /* it left another CPU unseen, at some moment since it ran there */
                vacate(w, b, c);
                bump(w, C_IN_NOT_RUNNABLE, t);
                if (open_span(w, b, clamp(w, b, w->last_event[b], t), t, WHY_SWITCH) < 0)
                    return -1;
            }
            if (b != idle && w->state[b] == BLOCKED && lost_wakeup(w, b, t) < 0)
                return -1;
            if (transition(w, b, t, b == w->idle[c] ? BLOCKED : RUNNABLE, RUNNING) < 0)
                return -1;
            w->curr[c] = b;
            w->last_switch[c] = t;
            w->g[G_SWITCHES] += 1;
        } else if (kind == K_WAKEUP || kind == K_WAKEUP_NEW) {
            if (wake(w, a, t, kind == K_WAKEUP_NEW) < 0)
                return -1;
        } else if (kind == K_EXIT) {
            w->exiting[a] = 1;
        } else if (kind == K_FORK) {
            if (w->deferred[a] < 0 && (w->state[a] == UNKNOWN || w->state[a] == ABSENT)) {
                w->state[a] = ABSENT;
                w->exiting[a] = 0;
            }
        }
    }
    w->g[G_LAST] = last;
    return 0;
}

static void *view(W *w, PyObject *o, Py_ssize_t itemsize, Py_ssize_t *count, int writable)
{
    if (w->n_views >= (int)(sizeof w->views / sizeof w->views[0])) {
        PyErr_SetString(PyExc_RuntimeError, "too many arrays");
        return NULL;
    }
    /* integers of the right size (u8 flags and i8 states share a width) */
    Py_buffer *b = &w->views[w->n_views];
    void *p = abi_view(b, o, "array", AK_BYTES, 1, writable, NULL);
    if (p == NULL)
        return NULL;
    w->n_views++;
    if (!abi_format_ok(b, AK_SIGNED, itemsize) && !abi_format_ok(b, AK_UNSIGNED, itemsize)) {
        PyErr_Format(PyExc_ValueError, "array of format '%s' where int%zd was expected",
                     b->format ? b->format : "B", 8 * itemsize);
        return NULL;
    }
    if (count)
        *count = b->len / itemsize;
    return p;
}

/* codes the loop uses as indices: task states, carried rows, CPU tasks */
static int check_codes(const W *w, Py_ssize_t start)
{
    for (Py_ssize_t t = 0; t < w->n_tasks; t++) {
        int s = w->state[t];
        if (s != UNKNOWN && s != RUNNING && s != RUNNABLE && s != BLOCKED && s != ABSENT &&
            s != SPAN) {
            PyErr_Format(PyExc_ValueError, "task %zd has the invalid state %d", t, s);
            return -1;
        }
        if (w->deferred[t] >= start) {
            PyErr_Format(PyExc_ValueError, "task %zd defers row %lld of %zd carried", t,
                         (long long)w->deferred[t], start);
            return -1;
        }
    }
    for (Py_ssize_t c = 0; c < w->n_cpus; c++) {
        int64_t cur = w->curr[c];
        if (w->idle[c] < 0 || w->idle[c] >= w->n_tasks ||
            (cur != NONE && cur != VACATED && (cur < 0 || cur >= w->n_tasks))) {
            PyErr_Format(PyExc_ValueError, "cpu %zd names a task beyond the %zd tasks", c,
                         w->n_tasks);
            return -1;
        }
    }
    return 0;
}

#define GET(dst, tuple, i, size, cnt, wr)                                            \
    do {                                                                            \
        dst = view(&w, PyTuple_GET_ITEM(tuple, i), size, cnt, wr);                  \
        if (dst == NULL)                                                            \
            goto fail;                                                              \
    } while (0)

/* the four columns of a row table (time i64, task or member i32, old i8, new i8), all
 * as long as the first (its length in *n); -1 with an exception set otherwise */
typedef struct {
    int64_t *time;
    int32_t *task;
    int8_t *old, *new;
} RowCols;

static int row_columns(W *w, PyObject *tuple, RowCols *rc, Py_ssize_t *n)
{
    static const Py_ssize_t size[4] = {8, 4, 1, 1};
    void *col[4];
    for (int i = 0; i < 4; i++) {
        Py_ssize_t m;
        col[i] = view(w, PyTuple_GET_ITEM(tuple, i), size[i], i ? &m : n, 1);
        if (col[i] == NULL)
            return -1;
        if (i && m < *n) {
            PyErr_SetString(PyExc_ValueError, "row columns differ in length");
            return -1;
        }
    }
    rc->time = col[0];
    rc->task = col[1];
    rc->old = col[2];
    rc->new = col[3];
    return 0;
}

static PyObject *walk(PyObject *self, PyObject *args)
{
    PyObject *ev, *tasks, *cpus, *out, *counters, *reg;
    Py_ssize_t start;
    W w;
    (void)self;
    memset(&w, 0, sizeof w);
    if (!PyArg_ParseTuple(args, "O!O!O!O!nO!O!", &PyTuple_Type, &ev, &PyTuple_Type, &tasks,
                          &PyTuple_Type, &cpus, &PyTuple_Type, &out, &start, &PyTuple_Type,
                          &counters, &PyTuple_Type, &reg))
        return NULL;
    if (PyTuple_GET_SIZE(ev) != 7 || PyTuple_GET_SIZE(tasks) != 8 ||
        PyTuple_GET_SIZE(cpus) != 4 || PyTuple_GET_SIZE(out) != 4 ||
        PyTuple_GET_SIZE(counters) != 3 || PyTuple_GET_SIZE(reg) != 3) {
        PyErr_SetString(PyExc_ValueError, "bad argument tuple sizes");
        return NULL;
    }
    Py_ssize_t n1, n2, n3, n4, n5, n6, n7, m;
    GET(w.time, ev, 0, 8, &n1, 0);
    GET(w.cpu, ev, 1, 4, &n2, 0);
    GET(w.kind, ev, 2, 1, &n3, 0);
    GET(w.pid, ev, 3, 4, &n4, 0);
    GET(w.other, ev, 4, 4, &n5, 0);
    GET(w.pstate, ev, 5, 8, &n6, 0);
    GET(w.actor, ev, 6, 4, &n7, 0);
    w.n = n1;
    if (n2 != n1 || n3 != n1 || n4 != n1 || n5 != n1 || n6 != n1 || n7 != n1) {
        PyErr_SetString(PyExc_ValueError, "event columns differ in length");
        goto fail;
    }
    GET(w.state, tasks, 0, 1, &w.n_tasks, 1);
    GET(w.grouped, tasks, 1, 1, &m, 0);
    if (m < w.n_tasks) goto short_arr;
    GET(w.exiting, tasks, 2, 1, &m, 1);
    if (m < w.n_tasks) goto short_arr;
    GET(w.wakeup, tasks, 3, 8, &m, 1);
    if (m < w.n_tasks) goto short_arr;
    GET(w.deferred, tasks, 4, 8, &m, 1);
    if (m < w.n_tasks) goto short_arr;
    GET(w.last_event, tasks, 5, 8, &m, 1);
    if (m < w.n_tasks) goto short_arr;
    GET(w.span_from, tasks, 6, 8, &m, 1);
    if (m < w.n_tasks) goto short_arr;
    GET(w.uncertain, tasks, 7, 8, &m, 1);
    if (m < N_WHY * w.n_tasks) goto short_arr;
    GET(w.curr, cpus, 0, 8, &w.n_cpus, 1);
    GET(w.last_switch, cpus, 1, 8, &m, 1);
    if (m < w.n_cpus) goto short_arr;
    GET(w.idle, cpus, 2, 8, &m, 0);
    if (m < w.n_cpus) goto short_arr;
    GET(w.seen, cpus, 3, 1, &m, 1);
    if (m < w.n_cpus) goto short_arr;
    GET(w.table, reg, 0, 4, &w.n_table, 0);
    GET(w.member, reg, 1, 4, &m, 1);
    if (m < w.n_tasks) goto short_arr;
    GET(w.fresh, reg, 2, 4, &m, 1);
    if (m < w.n_tasks) goto short_arr;
    RowCols oc;
    if (row_columns(&w, out, &oc, &w.cap_out) < 0)
        goto fail;
    w.otime = oc.time;
    w.otask = oc.task;
    w.oold = oc.old;
    w.onew = oc.new;
    GET(w.count, counters, 0, 8, &m, 1);
    if (m < N_COUNTERS) goto short_arr;
    GET(w.first, counters, 1, 8, &m, 1);
    if (m < N_COUNTERS) goto short_arr;
    GET(w.g, counters, 2, 8, &m, 1);
    if (m < N_G) goto short_arr;
    if (start < 0 || start > w.cap_out) {
        PyErr_SetString(PyExc_ValueError, "bad carried row count");
        goto fail;
    }
    if (check_codes(&w, start) < 0)
        goto fail;
    w.n_out = start;
    int rc;
    /* the state machine touches only the arrays: a thread reading ahead runs meanwhile */
    Py_BEGIN_ALLOW_THREADS
    rc = run(&w);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, "output buffer too small");
        goto fail;
    }
    for (int i = 0; i < w.n_views; i++)
        PyBuffer_Release(&w.views[i]);
    return Py_BuildValue("nn", w.n_out, w.n_fresh);
short_arr:
    PyErr_SetString(PyExc_ValueError, "state array shorter than needed");
fail:
    for (int i = 0; i < w.n_views; i++)
        PyBuffer_Release(&w.views[i]);
    return NULL;
}

static PyObject *bounds(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    Py_buffer b[5];
    const void *p[5];
    Py_ssize_t n[5];
    static const int size[5] = {4, 1, 4, 4, 4};
    int nv = 0;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &o[0], &o[1], &o[2], &o[3], &o[4]))
        return NULL;
    for (; nv < 5; nv++) {
        p[nv] = abi_view(&b[nv], o[nv], "column", AK_SIGNED, size[nv], 0, &n[nv]);
        if (p[nv] == NULL)
            goto done;
        if (n[nv] != n[0] || n[0] == 0) {
            PyErr_SetString(PyExc_ValueError, "columns empty or of different lengths");
            nv++;
            goto done;
        }
    }
    const int32_t *cpu = p[0], *pid = p[2], *other = p[3], *actor = p[4];
    const int8_t *kind = p[1];
    int32_t lo[4] = {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX};
    int32_t hi[4] = {INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN};
    int32_t top = -1;
    for (Py_ssize_t i = 0; i < n[0]; i++) {
        int32_t v[4] = {cpu[i], pid[i], other[i], actor[i]};
        for (int k = 0; k < 4; k++) {
            if (v[k] < lo[k])
                lo[k] = v[k];
            if (v[k] > hi[k])
                hi[k] = v[k];
        }
        if (pid[i] > top)
            top = pid[i];
        if (kind[i] == K_SWITCH && other[i] > top)
            top = other[i];
        if (actor[i] > top)
            top = actor[i];
    }
    result = Py_BuildValue("(ii)(ii)(ii)(ii)L", lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], lo[3],
                           hi[3], (long long)top + 1);
done:
    for (int i = 0; i < nv; i++)
        PyBuffer_Release(&b[i]);
    return result;
}

static int by_value(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/*
 * new_pids(kind, (pid, other_pid, actor), pid_table): the pids > 0 the table does not
 * have yet, as three ascending lists: those in the pid column, those in the switches'
 * other_pid and not in pid, those in actor only.  One pass; while it runs a new pid's
 * table entry says which column saw it (-2 - column), the earliest column winning.
 */
static PyObject *new_pids(PyObject *self, PyObject *args)
{
    PyObject *ko, *cols, *to;
    Py_buffer kb, tb, cb[3];
    Py_ssize_t n, m, nt;
    int ncb = 0;
    PyObject *result = NULL;
    int32_t *found[3] = {NULL, NULL, NULL};
    Py_ssize_t n_found[3] = {0, 0, 0}, cap_found[3] = {0, 0, 0};
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!O", &ko, &PyTuple_Type, &cols, &to))
        return NULL;
    if (PyTuple_GET_SIZE(cols) != 3) {
        PyErr_SetString(PyExc_ValueError, "three pid columns expected");
        return NULL;
    }
    const int8_t *kind = abi_view(&kb, ko, "kinds", AK_SIGNED, 1, 0, &n);
    if (kind == NULL)
        return NULL;
    int32_t *table = abi_view(&tb, to, "pid_table", AK_SIGNED, 4, 1, &nt);
    if (table == NULL) {
        PyBuffer_Release(&kb);
        return NULL;
    }
    const int32_t *col[3];
    for (; ncb < 3; ncb++) {
        col[ncb] = abi_view(&cb[ncb], PyTuple_GET_ITEM(cols, ncb), "pids", AK_SIGNED, 4, 0, &m);
        if (col[ncb] == NULL)
            goto done;
        if (m != n) {
            PyErr_SetString(PyExc_ValueError, "pid columns and kinds differ in length");
            ncb++;
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) {
            int32_t v = col[k][i];
            if (v <= 0 || (k == 1 && kind[i] != K_SWITCH))
                continue;
            if (v >= nt) {
                PyErr_SetString(PyExc_ValueError, "pid beyond the pid table");
                goto done;
            }
            int32_t t = table[v];
            if (t >= 0 || (t <= -2 && -2 - t <= k))
                continue;
            if (n_found[k] == cap_found[k]) {
                cap_found[k] = cap_found[k] ? 2 * cap_found[k] : 16;
                int32_t *grown = PyMem_Realloc(found[k], (size_t)cap_found[k] * sizeof(int32_t));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                found[k] = grown;
            }
            table[v] = -2 - k;
            found[k][n_found[k]++] = v;
        }
    }
    result = PyList_New(3);
    for (int k = 0; result != NULL && k < 3; k++) {
        /* a pid a later column listed first and an earlier one saw since: not its */
        Py_ssize_t kept = 0;
        for (Py_ssize_t i = 0; i < n_found[k]; i++)
            if (table[found[k][i]] == -2 - k)
                found[k][kept++] = found[k][i];
        if (kept > 1)
            qsort(found[k], (size_t)kept, sizeof(int32_t), by_value);
        PyObject *list = PyList_New(kept);
        for (Py_ssize_t i = 0; list != NULL && i < kept; i++) {
            PyObject *v = PyLong_FromLong(found[k][i]);
            if (v == NULL)
                Py_CLEAR(list);
            else
                PyList_SET_ITEM(list, i, v);
        }
        if (list == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, k, list);
    }
done:
    for (int k = 0; k < 3; k++)
        PyMem_Free(found[k]);
    for (int i = 0; i < ncb; i++)
        PyBuffer_Release(&cb[i]);
    PyBuffer_Release(&kb);
    PyBuffer_Release(&tb);
    return result;
}

/* a row handed on out of time order, with its place among the rows (for ties) */
typedef struct {
    int64_t time, index;
    int32_t member;
    int8_t old, new;
} Straggler;

static int by_time_index(const void *x, const void *y)
{
    const Straggler *a = x, *b = y;
    if (a->time != b->time)
        return a->time < b->time ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/*
 * The batch columns hold the rows that kept time order (`n_main`, first); the
 * stragglers (rows earlier than one before them) are sorted and merged in
 * from the back.  A main row and a straggler of equal time: the main row came
 * first (after the straggler only later times were kept in order).
 */
static void merge_stragglers(int64_t *ot, int32_t *om, int8_t *oo, int8_t *on, Py_ssize_t n_main,
                             Straggler *st, Py_ssize_t n_st)
{
    if (n_st == 0)
        return;
    qsort(st, (size_t)n_st, sizeof(Straggler), by_time_index);
    Py_ssize_t j = n_main, k = n_st, out = n_main + n_st;
    while (k > 0) {
        out--;
        if (j > 0 && ot[j - 1] > st[k - 1].time) {
            j--;
            ot[out] = ot[j];
            om[out] = om[j];
            oo[out] = oo[j];
            on[out] = on[j];
        } else {
            k--;
            ot[out] = st[k].time;
            om[out] = st[k].member;
            oo[out] = st[k].old;
            on[out] = st[k].new;
        }
    }
}

/* rows [from, from + n) of the four row columns to [to, to + n) (to <= from) */
static void move_run(int64_t *rt, int32_t *rk, int8_t *ro, int8_t *rn, Py_ssize_t from,
                     Py_ssize_t to, Py_ssize_t n)
{
    if (n == 0 || to == from)
        return;
    memmove(rt + to, rt + from, (size_t)n * sizeof *rt);
    memmove(rk + to, rk + from, (size_t)n * sizeof *rk);
    memmove(ro + to, ro + from, (size_t)n);
    memmove(rn + to, rn + from, (size_t)n);
}

typedef struct {
    int64_t row, task;
} Deferred;

static int by_row(const void *x, const void *y)
{
    const Deferred *a = x, *b = y;
    return (a->row > b->row) - (a->row < b->row);
}

static PyObject *split(PyObject *self, PyObject *args)
{
    PyObject *rows, *batch, *mo, *dto;
    Py_ssize_t n;
    long long cut, floor;
    int all;
    W w; /* only its view list is used */
    (void)self;
    memset(&w, 0, sizeof w);
    if (!PyArg_ParseTuple(args, "O!nLpLOOO!", &PyTuple_Type, &rows, &n, &cut, &all, &floor, &mo,
                          &dto, &PyTuple_Type, &batch))
        return NULL;
    if (PyTuple_GET_SIZE(rows) != 4 || PyTuple_GET_SIZE(batch) != 4) {
        PyErr_SetString(PyExc_ValueError, "bad argument tuple sizes");
        return NULL;
    }
    int64_t *rt, *ot, *deferred;
    int32_t *rk, *om, *member;
    int8_t *ro, *rn, *oo, *on;
    Py_ssize_t cap, m, n_tasks;
    RowCols in, to;
    Straggler *st = NULL;
    Py_ssize_t n_st = 0, cap_st = 0;
    Deferred *open_rows = NULL;
    PyObject *result = NULL;
    if (row_columns(&w, rows, &in, &cap) < 0 || row_columns(&w, batch, &to, &m) < 0)
        goto fail;
    if (m < n) goto short_arr;
    rt = in.time, rk = in.task, ro = in.old, rn = in.new;
    ot = to.time, om = to.task, oo = to.old, on = to.new;
    member = view(&w, mo, 4, &n_tasks, 0);
    if (member == NULL)
        goto fail;
    deferred = view(&w, dto, 8, &m, 1);
    if (deferred == NULL)
        goto fail;
    if (m < n_tasks) goto short_arr;
    if (n < 0 || n > cap) {
        PyErr_SetString(PyExc_ValueError, "row count outside the rows");
        goto fail;
    }
    /* deferred rows in row order, to follow them as rows move */
    Py_ssize_t n_open = 0;
    for (Py_ssize_t t = 0; t < n_tasks; t++)
        if (deferred[t] >= 0)
            n_open++;
    open_rows = PyMem_Malloc((size_t)(n_open ? n_open : 1) * sizeof(Deferred));
    if (open_rows == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    n_open = 0;
    for (Py_ssize_t t = 0; t < n_tasks; t++) {
        if (deferred[t] >= 0) {
            if (deferred[t] >= n) {
                PyErr_Format(PyExc_ValueError, "task %zd defers row %lld of %zd", t,
                             (long long)deferred[t], n);
                goto fail;
            }
            open_rows[n_open].row = deferred[t];
            open_rows[n_open++].task = t;
        }
    }
    if (n_open > 1)
        qsort(open_rows, (size_t)n_open, sizeof(Deferred), by_row);
    Py_ssize_t kept = 0, n_main = 0, next = 0;
    int64_t top = INT64_MIN;
    int no_memory = 0;
    /* rows and arrays only: a thread reading ahead runs meanwhile */
    Py_BEGIN_ALLOW_THREADS
    /* kept rows move to the front a run at a time: [run, run + n_run) goes to
     * [kept - n_run, kept) once a row handed on (or the end) ends the run */
    Py_ssize_t run = 0, n_run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!all && rt[i] >= cut) {
            if (n_run++ == 0)
                run = i;
            kept++;
        } else {
            move_run(rt, rk, ro, rn, run, kept - n_run, n_run);
            n_run = 0;
            int32_t task = rk[i];
            int32_t mem = -1;
            if (task >= 0) {
                mem = task < n_tasks ? member[task] : -1;
                if (mem < 0)
                    goto next_row;
            }
            int64_t t = rt[i] > floor ? rt[i] : floor;
            if (t >= top) {
                top = t;
                ot[n_main] = t;
                om[n_main] = mem;
                oo[n_main] = ro[i];
                on[n_main] = rn[i];
                n_main++;
            } else {
                if (n_st == cap_st) {
                    cap_st = cap_st ? 2 * cap_st : 64;
                    Straggler *grown = PyMem_RawRealloc(st, (size_t)cap_st * sizeof(Straggler));
                    if (grown == NULL) {
                        no_memory = 1;
                        break;
                    }
                    st = grown;
                }
                st[n_st++] = (Straggler){t, i, mem, ro[i], rn[i]};
            }
        }
    next_row:
        /* a deferred row's index among the kept rows (as cumsum(keep) - 1 gives it) */
        while (next < n_open && open_rows[next].row == i)
            deferred[open_rows[next++].task] = kept - 1;
    }
    move_run(rt, rk, ro, rn, run, kept - n_run, n_run);
    if (!no_memory)
        merge_stragglers(ot, om, oo, on, n_main, st, n_st);
    Py_END_ALLOW_THREADS
    if (no_memory) {
        PyErr_NoMemory();
        goto fail;
    }
    result = Py_BuildValue("nn", n_main + n_st, kept);
    goto fail;
short_arr:
    PyErr_SetString(PyExc_ValueError, "array shorter than needed");
fail:
    PyMem_RawFree(st);
    PyMem_Free(open_rows);
    for (int i = 0; i < w.n_views; i++)
        PyBuffer_Release(&w.views[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Run the scheduler state machine over one chunk."},
    {"bounds", bounds, METH_VARARGS, "Min and max of the event columns, and the pid table size."},
    {"new_pids", new_pids, METH_VARARGS, "The pids the pid table does not have yet."},
    {"split", split, METH_VARARGS, "Hand on the rows before a time; keep the rest."},
    {"first_rows", first_rows, METH_VARARGS, "Each member's first old state per epoch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_schedwalk", "scheduler event state machine", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__schedwalk(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL &&
        (ABI_CONST_AS(m, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 || ABI_CONST(m, N_COUNTERS) < 0 ||
         ABI_CONST(m, N_G) < 0 || ABI_CONST(m, N_WHY) < 0 || ABI_CONST(m, SPAN) < 0 ||
         ABI_CONST(m, K_SWITCH) < 0 || ABI_CONST(m, K_WAKEUP) < 0 ||
         ABI_CONST(m, FR_LOSS_BEGIN) < 0 || ABI_CONST(m, FR_LOSS_END) < 0 ||
         ABI_CONST(m, K_WAKEUP_NEW) < 0 || ABI_CONST(m, K_EXIT) < 0 || ABI_CONST(m, K_FORK) < 0 ||
         ABI_CONST(m, K_SEEN) < 0))
        Py_CLEAR(m);
    return m;
}
