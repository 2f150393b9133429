/* Memory of the names pass's columns (_perfscan.c): mapped for them alone.
 *
 * A Block is a run of anonymous pages that Python reads through the buffer protocol
 * (numpy's frombuffer reads it in place and keeps the Block alive while a view is).
 * The pages are the kernel's until written, and go back to it when the Block is freed:
 * never through malloc, whose heap would keep them, and whose threshold for mapping
 * large blocks a freed large block raises for every later allocation.
 */
#ifndef RUNSTATE_PERFSCAN_BLOCK_H
#define RUNSTATE_PERFSCAN_BLOCK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sys/mman.h>

typedef struct {
    PyObject_HEAD
    void *at;
    Py_ssize_t len;
} Block;

static int block_getbuffer(Block *b, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)b, b->at, b->len, 0, flags);
}

static void block_dealloc(Block *b)
{
    if (b->at != NULL)
        munmap(b->at, (size_t)b->len);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static PyBufferProcs block_buffer = {(getbufferproc)block_getbuffer, NULL};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runstate.sources.linux._perfscan.Block",
    .tp_basicsize = sizeof(Block),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pages of a names pass's column, read in place through the buffer protocol.",
    .tp_dealloc = (destructor)block_dealloc,
    .tp_as_buffer = &block_buffer,
};

/* a Block of `len` bytes (> 0), untouched; NULL with an exception set */
static PyObject *block_new(Py_ssize_t len)
{
    Block *b = PyObject_New(Block, &BlockType);
    if (b == NULL)
        return NULL;
    b->len = len;
    b->at = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->at == MAP_FAILED) {
        b->at = NULL;
        Py_DECREF(b);
        return PyErr_NoMemory();
    }
    return (PyObject *)b;
}

#endif
