/* The per-event scheduler state machine of sched.py, for speed.
 *
 * walk(events, tasks, cpus, out, n_out_start, counters)
 *
 * events: (time i64, cpu i32, kind i8, task i32, other_task i32, prev_state i64)
 *         task / other_task are dense task indices (the idle task of CPU c has
 *         its own index); -1 = none.
 * tasks:  (state i8, grouped u8, exiting u8, wakeup i64, deferred i64)
 *         state: -1 unknown, 0 running, 1 runnable, 2 blocked, 4 absent.
 *         deferred: index in out of a switch-out row whose new state is open.
 * cpus:   (curr i64, last_switch i64, idle_task i64)  curr: -1 none, -2 vacated.
 * out:    (time i64, task i32, old i8, new i8), rows [0, n_out_start) are carried
 *         over from the previous call; new rows are appended.
 * counters: (count i64[N], first_time i64[N], globals i64[4]) globals:
 *         [0] last time, [1] floor (rows may not precede it), [2] switches,
 *         [3] number of open deferred rows, [4] 1 for a pid-filtered trace.
 *
 * Returns the number of rows in out, or raises if out is too small (the
 * caller sizes it at carried + 4 rows per event).  The rules and their reasons
 * are documented in sched.py, which holds the reference implementation.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum { RUNNING = 0, RUNNABLE = 1, BLOCKED = 2, ABSENT = 4, UNKNOWN = -1 };
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
    Py_ssize_t n;
    int8_t *state;
    const uint8_t *grouped;
    uint8_t *exiting;
    int64_t *wakeup;
    int64_t *deferred;
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

/* move task to `new`; `expected` is the state the event implies it was in */
static int transition(W *w, Py_ssize_t task, int64_t t, int expected, int new)
{
    int old = w->state[task];
    if (old == UNKNOWN) {
        old = expected;
        if (w->deferred[task] >= 0) {
            resolve(w, task, old);
            if (old == RUNNING)
                old = RUNNABLE;
        }
    } else if (old != expected) {
        if (old == ABSENT)
            bump(w, C_AFTER_EXIT, t);
        else if (expected == RUNNING)
            bump(w, C_OUT_NOT_RUNNING, t);
        else
            bump(w, C_IN_NOT_RUNNABLE, t);
    }
    w->state[task] = (int8_t)new;
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
    if (old == UNKNOWN) {
        old = new_task ? ABSENT : BLOCKED;
        if (w->deferred[task] >= 0) {
            old = BLOCKED;
            resolve(w, task, old);
        }
    } else if (old == ABSENT && !new_task) {
        bump(w, C_AFTER_EXIT, t);
    }
    w->state[task] = RUNNABLE;
    if (w->grouped[task])
        return emit(w, t, task, old, RUNNABLE);
    return 0;
}

static int defer(W *w, Py_ssize_t task, int64_t at, int count)
{
    if (w->deferred[task] >= 0) {
        w->onew[w->deferred[task]] = BLOCKED;
        w->deferred[task] = -1;
        w->g[G_OPEN] -= 1;
        bump(w, C_UNPROVEN, at);
    }
    w->state[task] = UNKNOWN;
    if (!w->grouped[task]) {
        if (count)
            bump(w, C_REPAIRS, at);
        return 0;
    }
    w->deferred[task] = w->n_out;
    w->g[G_OPEN] += 1;
    return emit(w, at, task, RUNNING, UNKNOWN);
}

static int repair(W *w, Py_ssize_t c, int64_t cur, Py_ssize_t prev, int64_t t)
{
    /* a pid-filtered trace misses the switches between untraced tasks: only
     * breaks that a traced task reveals are anomalies there */
    int count = !w->g[G_FILTERED] || w->grouped[prev];
    if (count)
        bump(w, C_BREAKS, t);
    int64_t at = w->last_switch[c] + 1;
    if (w->wakeup[prev] != INT64_MIN && w->wakeup[prev] + 1 > at)
        at = w->wakeup[prev] + 1;
    if (at < w->g[G_FLOOR])
        at = w->g[G_FLOOR];
    if (at > t)
        at = t;
    int rc = 0;
    if (cur == VACATED) {
        if (count)
            bump(w, C_REPAIRS, t);
    } else if (cur == w->idle[c]) {
        if (count)
            bump(w, C_REPAIRS, t);
        rc = transition(w, (Py_ssize_t)cur, at, RUNNING, BLOCKED);
    } else if (w->exiting[cur]) {
        if (count)
            bump(w, C_REPAIRS, t);
        rc = transition(w, (Py_ssize_t)cur, at, RUNNING, ABSENT);
    } else {
        rc = defer(w, (Py_ssize_t)cur, at, count);
    }
    if (rc < 0)
        return rc;
    if (count && prev != w->idle[c] && w->state[prev] == BLOCKED) {
        /* its wakeup was lost too: it ran from some unknown time after `at` */
        bump(w, C_START_UNKNOWN, t);
    }
    return transition(w, prev, at, prev == w->idle[c] ? BLOCKED : RUNNABLE, RUNNING);
}

static void vacate(W *w, Py_ssize_t task, Py_ssize_t cpu, int64_t t)
{
    for (Py_ssize_t c = 0; c < w->n_cpus; c++) {
        if (c != cpu && w->curr[c] == task) {
            w->curr[c] = VACATED;
            if (w->last_switch[c] < t)
                w->last_switch[c] = t;
        }
    }
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
            int64_t ps = w->pstate[i];
            int after = (ps & 0xff) == 0 ? RUNNABLE : ((ps & 0x30) ? ABSENT : BLOCKED);
            if (a == w->idle[c])
                after = BLOCKED;
            if (transition(w, a, t, RUNNING, after) < 0)
                return -1;
            if (b != w->idle[c] && w->state[b] == RUNNING)
                vacate(w, b, c, t);
            if (transition(w, b, t, b == w->idle[c] ? BLOCKED : RUNNABLE, RUNNING) < 0)
                return -1;
            w->curr[c] = b;
            w->last_switch[c] = t;
            w->g[G_SWITCHES] += 1;
        } else if (kind == K_WAKEUP || kind == K_WAKEUP_NEW) {
            w->wakeup[a] = t;
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
    Py_buffer *b = &w->views[w->n_views];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, b, flags) < 0)
        return NULL;
    w->n_views++;
    if (b->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "array item size %zd, expected %zd", b->itemsize,
                     itemsize);
        return NULL;
    }
    if (count)
        *count = b->len / itemsize;
    return b->buf;
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
    if (PyTuple_GET_SIZE(ev) != 6 || PyTuple_GET_SIZE(tasks) != 5 ||
        PyTuple_GET_SIZE(cpus) != 3 || PyTuple_GET_SIZE(out) != 4 ||
        PyTuple_GET_SIZE(counters) != 3) {
        PyErr_SetString(PyExc_TypeError, "bad argument tuple sizes");
        return NULL;
    }
    Py_ssize_t n1, n2, n3, n4, n5, n6, m;
    GET(w.time, ev, 0, 8, &n1, 0);
    GET(w.cpu, ev, 1, 4, &n2, 0);
    GET(w.kind, ev, 2, 1, &n3, 0);
    GET(w.task, ev, 3, 4, &n4, 0);
    GET(w.other, ev, 4, 4, &n5, 0);
    GET(w.pstate, ev, 5, 8, &n6, 0);
    w.n = n1;
    if (n2 != n1 || n3 != n1 || n4 != n1 || n5 != n1 || n6 != n1) {
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
};

PyMODINIT_FUNC PyInit__schedwalk(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL)
        PyModule_AddIntConstant(m, "N_COUNTERS", N_COUNTERS);
    return m;
}
