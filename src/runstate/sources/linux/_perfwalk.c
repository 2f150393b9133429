/* Walks the variable-length records of a perf.data data section.
 *
 * walk(buffer, pos, offsets, types) fills offsets (int64) and types (uint32)
 * with each whole record's position and type, starting at pos, until the
 * buffer or the output arrays run out.  Returns (count, next_pos, status):
 * status 0 = stopped for want of data or room, -1 = a record header with a
 * size below 8 bytes at next_pos (the file is damaged there).  A pos outside
 * the buffer or output arrays of other types or lengths raise ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../../kernel_abi.h"

#define PERF_RECORD_AUXTRACE 71

static PyObject *walk(PyObject *self, PyObject *args)
{
    PyObject *buf_o, *offs_o, *types_o;
    Py_buffer buf, offs, types;
    Py_ssize_t pos, len, n_offs, n_types;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnOO", &buf_o, &pos, &offs_o, &types_o))
        return NULL;
    if (!abi_view(&buf, buf_o, "buffer", AK_BYTES, 1, 0, &len))
        return NULL;
    if (!abi_view(&offs, offs_o, "offsets", AK_SIGNED, 8, 1, &n_offs)) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (!abi_view(&types, types_o, "types", AK_UNSIGNED, 4, 1, &n_types)) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&offs);
        return NULL;
    }
    if (pos < 0 || pos > len || n_types != n_offs) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&offs);
        PyBuffer_Release(&types);
        PyErr_SetString(PyExc_ValueError, pos < 0 || pos > len
                                              ? "pos outside the buffer"
                                              : "offsets and types differ in length");
        return NULL;
    }
    const uint8_t *p = buf.buf;
    int64_t *o = offs.buf;
    uint32_t *t = types.buf;
    Py_ssize_t cap = n_offs;
    Py_ssize_t n = 0;
    int status = 0;
    while (n < cap && len - pos >= 8) {
        uint32_t type;
        uint16_t size;
        memcpy(&type, p + pos, 4);
        memcpy(&size, p + pos + 6, 2);
        if (size < 8) {
            status = -1;
            break;
        }
        Py_ssize_t total = size;
        if (type == PERF_RECORD_AUXTRACE) {
            uint64_t aux;
            if (len - pos < 16)
                break;
            memcpy(&aux, p + pos + 8, 8);
            if (aux > (uint64_t)1 << 40) {
                status = -1;
                break;
            }
            total += (Py_ssize_t)aux;
        }
        if (total > len - pos)
            break;
        o[n] = pos;
        t[n] = type;
        n++;
        pos += total;
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&offs);
    PyBuffer_Release(&types);
    return Py_BuildValue("nni", n, pos, status);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Find whole perf.data records: (count, next_pos, status)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_perfwalk", "perf.data record walker", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__perfwalk(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && (ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
                        ABI_CONST(mod, PERF_RECORD_AUXTRACE) < 0))
        Py_CLEAR(mod);
    return mod;
}
