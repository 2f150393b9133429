/* The first pass of exact mode over converted rows, in C (included by _schedwalk.c).
 *
 * first_rows(member i32, old i8, new i8, start, table i8, depth) -> (stop, depth, epoch)
 *
 * Reads batch rows from `start` on, as engine/resolve.py's Resolver does: outside
 * loss windows, a member whose entry in `table` is negative gets the old state of
 * its first row in the run of rows between two loss markers; a marker row
 * (member < 0) opens (LOSS_BEGIN) or closes (LOSS_END) a window.  When the last
 * open window closes, a new epoch begins: the call returns just after that row
 * with epoch 1, and the caller goes on with a fresh table.  Otherwise stop is
 * the batch's end.  Within one run the first row decides, even one whose old
 * state is negative (a later run may then set the entry again), as the
 * Resolver's sort does.  A member beyond the table is a ValueError.
 */
#ifndef RUNSTATE_SCHEDFIRST_H
#define RUNSTATE_SCHEDFIRST_H

#include <Python.h>
#include <stdint.h>

#include "../../kernel_abi.h"

enum { FR_LOSS_BEGIN = 10, FR_LOSS_END = 11 };

/* a member given a negative old state in the current run: its entry holds this until
 * the run ends (so later rows of the run leave it), then the state itself */
#define FR_HELD INT8_MIN

typedef struct {
    int32_t *member;
    int8_t *old;
    Py_ssize_t n, cap;
} FrHeld;

static int fr_hold(FrHeld *h, int32_t m, int8_t old)
{
    if (h->n == h->cap) {
        Py_ssize_t cap = h->cap ? 2 * h->cap : 16;
        int32_t *pm = PyMem_Realloc(h->member, (size_t)cap * sizeof(int32_t));
        if (pm == NULL)
            return -1;
        h->member = pm;
        int8_t *po = PyMem_Realloc(h->old, (size_t)cap);
        if (po == NULL)
            return -1;
        h->old = po;
        h->cap = cap;
    }
    h->member[h->n] = m;
    h->old[h->n++] = old;
    return 0;
}

/* the run ends: members held for a negative state get it */
static void fr_end_run(int8_t *table, FrHeld *h)
{
    for (Py_ssize_t k = 0; k < h->n; k++)
        table[h->member[k]] = h->old[k];
    h->n = 0;
}

/* rows [i, n): 1 when an epoch ended (at *stop), 0 at the end, -1 on an error */
static int fr_rows(const int32_t *member, const int8_t *old, const int8_t *new, Py_ssize_t i,
                   Py_ssize_t n, int8_t *table, Py_ssize_t n_table, long *depth, FrHeld *h,
                   Py_ssize_t *stop)
{
    for (; i < n; i++) {
        int32_t m = member[i];
        if (m < 0) {
            fr_end_run(table, h);
            if (new[i] == FR_LOSS_BEGIN) {
                ++*depth;
            } else if (new[i] == FR_LOSS_END && *depth > 0 && --*depth == 0) {
                *stop = i + 1;
                return 1;
            }
            continue;
        }
        if (m >= n_table) {
            PyErr_Format(PyExc_ValueError, "member %d beyond the table of %zd", m, n_table);
            return -1;
        }
        if (*depth > 0 || table[m] >= 0 || table[m] == FR_HELD)
            continue;
        if (old[i] >= 0) {
            table[m] = old[i];
        } else {
            if (fr_hold(h, m, old[i]) < 0) {
                PyErr_NoMemory();
                return -1;
            }
            table[m] = FR_HELD;
        }
    }
    *stop = n;
    return 0;
}

static PyObject *first_rows(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    Py_ssize_t start;
    long depth;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOnOl", &o[0], &o[1], &o[2], &start, &o[3], &depth))
        return NULL;
    static const char *names[4] = {"member", "old_state", "new_state", "table"};
    static const int sizes[4] = {4, 1, 1, 1};
    Py_buffer b[4];
    void *p[4];
    Py_ssize_t len[4];
    int nb = 0;
    PyObject *result = NULL;
    FrHeld held = {NULL, NULL, 0, 0};
    for (; nb < 4; nb++) {
        p[nb] = abi_view(&b[nb], o[nb], names[nb], AK_SIGNED, sizes[nb], nb == 3, &len[nb]);
        if (p[nb] == NULL)
            goto done;
    }
    Py_ssize_t n = len[0];
    if (len[1] != n || len[2] != n || start < 0 || start > n || depth < 0) {
        PyErr_SetString(PyExc_ValueError, "row columns differ in length, or a bad start");
        goto done;
    }
    Py_ssize_t stop;
    int epoch = fr_rows(p[0], p[1], p[2], start, n, p[3], len[3], &depth, &held, &stop);
    fr_end_run(p[3], &held); /* also after an error: no placeholder is left behind */
    if (epoch >= 0)
        result = Py_BuildValue("nli", stop, depth, epoch);
done:
    PyMem_Free(held.member);
    PyMem_Free(held.old);
    for (int k = 0; k < nb; k++)
        PyBuffer_Release(&b[k]);
    return result;
}

#endif
