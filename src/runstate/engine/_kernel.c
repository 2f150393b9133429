/*
 * The engine's inner loop: member state changes -> domain runstate accounting.
 *
 * Why C: every event updates one member and one domain, and which domain an
 * event touches is data-dependent, so numpy would need a sort by domain per
 * batch (about 1 s for 10 M rows).  This loop does the same work at tens of
 * millions of events per second.  All state lives in numpy arrays owned by
 * runstate.engine.core.Engine; this file only holds the loop, so a snapshot is
 * a copy of those arrays.  The slow, obviously correct version of the same
 * rules is tests/reference.py; the rules themselves are in kernel_core.h.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../kernel_abi.h"
#include "kernel_core.h"
#include "kernel_state.h"

/* ---- argument plumbing ------------------------------------------------- */
/* Every array is checked before the loop runs (kernel_state.h); each event
 * row is checked by the loop just before it is used (bad_row).  A caller's
 * mistake is a ValueError, never a stray write (the rows before a refused
 * one are accounted, as if fed alone). */

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
    Bound b;
    memset(&b, 0, sizeof b);
    Kernel *k = &b.k;
    Py_ssize_t n, n2, n3, n4;
    const int64_t *time;
    const int32_t *member;
    const int8_t *old, *new;
    if (bind_state(&b, state) < 0 ||
        !(time = bound_view(&b, t_obj, "time", AK_SIGNED, 8, &n, 0)) ||
        !(member = bound_view(&b, m_obj, "member", AK_SIGNED, 4, &n2, 0)) ||
        !(old = bound_view(&b, o_obj, "old_state", AK_SIGNED, 1, &n3, 0)) ||
        !(new = bound_view(&b, n_obj, "new_state", AK_SIGNED, 1, &n4, 0)))
        goto fail;
    if (expect_len("member", n2, n) < 0 || expect_len("old_state", n3, n) < 0 ||
        expect_len("new_state", n4, n) < 0)
        goto fail;
    if (r_obj != Py_None) {
        Py_ssize_t nr;
        if (!(k->resolve = bound_view(&b, r_obj, "resolve", AK_SIGNED, 1, &nr, 0)))
            goto fail;
        if (k->n_members == 0 ? nr != 0 : nr % k->n_members != 0) {
            PyErr_Format(PyExc_ValueError,
                         "resolve has %zd elements, not a whole number of rows of %zd members",
                         nr, k->n_members);
            goto fail;
        }
        if (codes_in_range("resolve", k->resolve, nr, -1, UNSEEN) < 0)
            goto fail;
        k->n_epochs = k->n_members ? nr / k->n_members : 0;
    }
    int why = BAD_NONE;
    Py_ssize_t done;
    Py_BEGIN_ALLOW_THREADS
    done = run(k, n, time, member, old, new, &why);
    Py_END_ALLOW_THREADS
    if (done < n) {
        refuse_row(why, done, time, member, k->n_members);
        goto fail;
    }
    bound_release(&b);
    Py_RETURN_NONE;
fail:
    bound_release(&b);
    return NULL;
}

static PyObject *py_close_all(PyObject *self, PyObject *args)
{
    PyObject *state;
    long long t;
    (void)self;
    if (!PyArg_ParseTuple(args, "OL", &state, &t))
        return NULL;
    Bound b;
    memset(&b, 0, sizeof b);
    Kernel *k = &b.k;
    if (bind_state(&b, state) < 0) {
        bound_release(&b);
        return NULL;
    }
    close_all(k, (int64_t)t);
    bound_release(&b);
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
