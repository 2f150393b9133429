/*
 * The engine's state arrays as a Kernel: the 13-tuple runstate.engine.core
 * hands to C (mdom, mstate, msince, mns, dcount, dlast, dns, ep_state,
 * ep_len, ep_count, ep_max, ep_hist, globals), each array checked for element
 * type, contiguity and length, and every code the loop uses as an index
 * (states, member and domain numbers) for its range.  Shared by the engine's
 * kernel (_kernel.c) and the xentrace fast path that accounts rows itself
 * (sources/xentrace/_job.c), which takes the engine's arrays the same way.
 */
#ifndef RUNSTATE_ENGINE_KERNEL_STATE_H
#define RUNSTATE_ENGINE_KERNEL_STATE_H

#include <Python.h>
#include <stdint.h>

#include "../kernel_abi.h"
#include "kernel_core.h"

/* a Kernel over the caller's arrays, and the views that hold them */
typedef struct {
    Kernel k;
    Py_buffer views[24];
    int n_views;
} Bound;

static void bound_release(Bound *b)
{
    for (int i = 0; i < b->n_views; i++)
        PyBuffer_Release(&b->views[i]);
    b->n_views = 0;
}

static void *bound_view(Bound *b, PyObject *obj, const char *name, int kind,
                        Py_ssize_t itemsize, Py_ssize_t *count, int writable)
{
    if (b->n_views >= (int)(sizeof b->views / sizeof b->views[0])) {
        PyErr_SetString(PyExc_ValueError, "too many arrays");
        return NULL;
    }
    void *p = abi_view(&b->views[b->n_views], obj, name, kind, itemsize, writable, count);
    if (p != NULL)
        b->n_views++;
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
static int bind_state(Bound *b, PyObject *state)
{
    Kernel *k = &b->k;
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 13) {
        PyErr_SetString(PyExc_ValueError, "state must be a 13-tuple of arrays");
        return -1;
    }
#define ITEM(i) PyTuple_GET_ITEM(state, i)
    Py_ssize_t nm, nd, ng, c[10];
    if (!(k->mdom = bound_view(b, ITEM(0), "mdom", AK_SIGNED, 4, &nm, 0)) ||
        !(k->mstate = bound_view(b, ITEM(1), "mstate", AK_SIGNED, 1, &c[0], 1)) ||
        !(k->msince = bound_view(b, ITEM(2), "msince", AK_SIGNED, 8, &c[1], 1)) ||
        !(k->mns = bound_view(b, ITEM(3), "mns", AK_SIGNED, 8, &c[2], 1)) ||
        !(k->dcount = bound_view(b, ITEM(4), "dcount", AK_SIGNED, 4, &c[3], 1)) ||
        !(k->dlast = bound_view(b, ITEM(5), "dlast", AK_SIGNED, 8, &nd, 1)) ||
        !(k->dns = bound_view(b, ITEM(6), "dns", AK_SIGNED, 8, &c[4], 1)) ||
        !(k->ep_state = bound_view(b, ITEM(7), "ep_state", AK_SIGNED, 1, &c[5], 1)) ||
        !(k->ep_len = bound_view(b, ITEM(8), "ep_len", AK_SIGNED, 8, &c[6], 1)) ||
        !(k->ep_count = bound_view(b, ITEM(9), "ep_count", AK_SIGNED, 8, &c[7], 1)) ||
        !(k->ep_max = bound_view(b, ITEM(10), "ep_max", AK_SIGNED, 8, &c[8], 1)) ||
        !(k->ep_hist = bound_view(b, ITEM(11), "ep_hist", AK_UNSIGNED, 4, &c[9], 1)) ||
        !(k->g = bound_view(b, ITEM(12), "globals", AK_SIGNED, 8, &ng, 1)))
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

#endif
