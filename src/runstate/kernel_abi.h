/*
 * The Python-facing boundary shared by every C kernel.
 *
 * A kernel trusts the arrays it is handed once they pass these checks, so the
 * checks are the only thing standing between a caller's mistake and memory
 * corruption: every array is taken with its element type, C-contiguity and
 * writability checked here, and a mismatch raises ValueError naming the
 * argument.  Counts and codes inside the arrays are checked by each kernel
 * before its loop runs.
 *
 * KERNEL_ABI_VERSION changes whenever a kernel's arguments, array layouts or
 * exported constants change; the Python side (runstate/_abi.py) compares it
 * with its own so that a stale build is refused at import instead of
 * misreading arrays.
 */
#ifndef RUNSTATE_KERNEL_ABI_H
#define RUNSTATE_KERNEL_ABI_H

#include <Python.h>
#include <string.h>

#define KERNEL_ABI_VERSION 1

/* element kinds */
enum { AK_SIGNED = 'i', AK_UNSIGNED = 'u', AK_BYTES = 'b' };

/* 1 if the buffer format describes an integer of the given kind and size */
static inline int abi_format_ok(const Py_buffer *b, int kind, Py_ssize_t itemsize)
{
    if (kind == AK_BYTES)
        return 1;
    if (b->itemsize != itemsize || b->format == NULL)
        return 0;
    const char *f = b->format;
    while (*f == '@' || *f == '=' || *f == '<')
        f++;
    if (f[0] == '\0' || f[1] != '\0')
        return 0;
    const char *set = kind == AK_SIGNED ? "bhilqn" : "BHILQN";
    return strchr(set, f[0]) != NULL;
}

static inline const char *abi_kind_name(int kind)
{
    return kind == AK_SIGNED ? "int" : kind == AK_UNSIGNED ? "uint" : "byte";
}

/*
 * Acquire `obj` as a one-dimensional C-contiguous array of `kind` integers of
 * `itemsize` bytes (any contiguous bytes for AK_BYTES).  On success the view
 * is in *b (release it with PyBuffer_Release) and its element count in
 * *count; on failure nothing is held and ValueError is set.
 */
static inline void *abi_view(Py_buffer *b, PyObject *obj, const char *name, int kind,
                             Py_ssize_t itemsize, int writable, Py_ssize_t *count)
{
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(PyExc_ValueError, "%s: not a%s buffer (%S)", name,
                     writable ? " writable" : "", value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    const char *why = NULL;
    if (!PyBuffer_IsContiguous(b, 'C'))
        why = "is not C-contiguous";
    else if (!abi_format_ok(b, kind, itemsize))
        why = "has the wrong element type";
    if (why != NULL) {
        PyErr_Format(PyExc_ValueError, "%s %s (expected %s%zd, got format '%s' of %zd bytes)",
                     name, why, abi_kind_name(kind), 8 * itemsize,
                     b->format ? b->format : "B", b->itemsize);
        PyBuffer_Release(b);
        return NULL;
    }
    if (count)
        *count = kind == AK_BYTES ? b->len : b->len / itemsize;
    return b->buf;
}

/* export a C constant under its own name (0 on success, -1 with an exception set) */
#define ABI_CONST(mod, name) PyModule_AddIntConstant((mod), #name, (long)(name))
/* export a C constant under a Python-side name */
#define ABI_CONST_AS(mod, pyname, value) PyModule_AddIntConstant((mod), (pyname), (long)(value))

#endif
