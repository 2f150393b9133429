/* The per-event scheduler state machine of sched.py, for speed.
 *
 * walk(events, tasks, cpus, out, n_out_start, counters)
 *
 * events: (time i64, cpu i32, kind i8, task i32, other_task i32, prev_state i64,
 *          actor i32)
 *         task / other_task / actor are dense task indices (the idle task of
 *         CPU c has its own index); -1 = none.  actor: the task current on the
 *         CPU when the event was recorded, where known.
 * tasks:  (state i8, grouped u8, exiting u8, wakeup i64, deferred i64, last_event i64,
 *          span_from i64, uncertain i64[3 * n_tasks])
 *         state: -1 unknown, 0 running, 1 runnable, 2 blocked, 4 absent,
 *         5 in an undecidable span (its rows carry the engine's UNKNOWN).
 *         deferred: index in out of a span-end row whose new state is open.
 *         last_event: time of the task's last state change.
 *         span_from: start of an open span not yet added to `uncertain`.
 *         uncertain: ns of undecidable span per task and cause (WHY_*).
 * cpus:   (curr i64, last_switch i64, idle_task i64)  curr: -1 none, -2 vacated.
 * out:    (time i64, task i32, old i8, new i8), rows [0, n_out_start) are carried
 *         over from the previous call; new rows are appended.
 * counters: (count i64[N], first_time i64[N], globals i64[4]) globals:
 *         [0] last time, [1] floor (rows may not precede it), [2] switches,
 *         [3] number of open deferred rows, [4] 1 for a pid-filtered trace.
 *
 * Returns the number of rows in out, or raises if out is too small (the
 * caller sizes it at carried + 8 rows per event).  The rules and their reasons
 * are documented in sched.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "../../kernel_abi.h"

enum { RUNNING = 0, RUNNABLE = 1, BLOCKED = 2, ABSENT = 4, UNKNOWN = -1, SPAN = 5 };
/* why a span cannot be decided: a switch was not recorded, or a wakeup; LATE:
 * the span began before rows already handed on (they show the state believed
 * then), so that part is uncertain but not shown as lost */
enum { WHY_SWITCH = 0, WHY_WAKEUP = 1, WHY_LATE = 2, N_WHY = 3 };
enum { K_SWITCH = 0, K_WAKEUP = 1, K_WAKEUP_NEW = 2, K_EXIT = 3, K_FORK = 4 };
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
    const int32_t *task;
    const int32_t *other;
    const int64_t *pstate;
    const int32_t *actor;
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
    if (w->n_out >= w->cap_out) {
        PyErr_SetString(PyExc_ValueError, "output buffer too small");
        return -1;
    }
    Py_ssize_t i = w->n_out++;
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
static int seen_running(W *w, Py_ssize_t i, int64_t t)
{
    Py_ssize_t c = w->cpu[i];
    Py_ssize_t x = w->actor[i];
    if (x < 0 || x >= w->n_tasks || c < 0 || c >= w->n_cpus)
        return 0;
    int64_t cur = w->curr[c];
    if (cur == NONE || cur == x)
        return 0;
    if (repair(w, c, cur, x, t) < 0 ||
        transition(w, x, t, SPAN, RUNNING) < 0)
        return -1;
    w->curr[c] = x;
    w->last_switch[c] = t;
    return 0;
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
        if (kind != K_SWITCH && seen_running(w, i, t) < 0)
            return -1;
        Py_ssize_t a = w->task[i];
        if (a < 0 || a >= w->n_tasks)
            continue;
        if (kind == K_SWITCH) {
            Py_ssize_t c = w->cpu[i];
            Py_ssize_t b = w->other[i];
            if (c < 0 || c >= w->n_cpus || b < 0 || b >= w->n_tasks)
                continue;
            int64_t cur = w->curr[c];
            if (cur != NONE && cur != a && repair(w, c, cur, a, t) < 0)
                return -1;
            Py_ssize_t idle = (Py_ssize_t)w->idle[c];
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

static PyObject *walk(PyObject *self, PyObject *args)
{
    PyObject *ev, *tasks, *cpus, *out, *counters;
    Py_ssize_t start;
    W w;
    (void)self;
    memset(&w, 0, sizeof w);
    if (!PyArg_ParseTuple(args, "O!O!O!O!nO!", &PyTuple_Type, &ev, &PyTuple_Type, &tasks,
                          &PyTuple_Type, &cpus, &PyTuple_Type, &out, &start, &PyTuple_Type,
                          &counters))
        return NULL;
    if (PyTuple_GET_SIZE(ev) != 7 || PyTuple_GET_SIZE(tasks) != 8 ||
        PyTuple_GET_SIZE(cpus) != 3 || PyTuple_GET_SIZE(out) != 4 ||
        PyTuple_GET_SIZE(counters) != 3) {
        PyErr_SetString(PyExc_ValueError, "bad argument tuple sizes");
        return NULL;
    }
    Py_ssize_t n1, n2, n3, n4, n5, n6, n7, m;
    GET(w.time, ev, 0, 8, &n1, 0);
    GET(w.cpu, ev, 1, 4, &n2, 0);
    GET(w.kind, ev, 2, 1, &n3, 0);
    GET(w.task, ev, 3, 4, &n4, 0);
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
    GET(w.otime, out, 0, 8, &w.cap_out, 1);
    GET(w.otask, out, 1, 4, &m, 1);
    if (m < w.cap_out) goto short_arr;
    GET(w.oold, out, 2, 1, &m, 1);
    if (m < w.cap_out) goto short_arr;
    GET(w.onew, out, 3, 1, &m, 1);
    if (m < w.cap_out) goto short_arr;
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
    if (run(&w) < 0)
        goto fail;
    for (int i = 0; i < w.n_views; i++)
        PyBuffer_Release(&w.views[i]);
    return PyLong_FromSsize_t(w.n_out);
short_arr:
    PyErr_SetString(PyExc_ValueError, "state array shorter than needed");
fail:
    for (int i = 0; i < w.n_views; i++)
        PyBuffer_Release(&w.views[i]);
    return NULL;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Run the scheduler state machine over one chunk."},
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
         ABI_CONST(m, K_WAKEUP_NEW) < 0 || ABI_CONST(m, K_EXIT) < 0 || ABI_CONST(m, K_FORK) < 0))
        Py_CLEAR(m);
    return m;
}
