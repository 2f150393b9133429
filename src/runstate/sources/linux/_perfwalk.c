/* Walks the variable-length records of a perf.data data section.
 *
 * walk(buffer, pos, offsets, types) fills offsets (int64) and types (uint32)
 * with each whole record's position and type, starting at pos, until the
 * buffer or the output arrays run out.  Returns (count, next_pos, status):
 * status 0 = stopped for want of data or room, -1 = a record header with a
 * size below 8 bytes at next_pos (the file is damaged there).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PERF_RECORD_AUXTRACE 71

static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer buf, offs, types;
    Py_ssize_t pos;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nw*w*", &buf, &pos, &offs, &types))
        return NULL;
    const uint8_t *p = buf.buf;
    Py_ssize_t len = buf.len;
    int64_t *o = offs.buf;
    uint32_t *t = types.buf;
    Py_ssize_t cap = offs.len / 8;
    if (types.len / 4 < cap)
        cap = types.len / 4;
    Py_ssize_t n = 0;
    int status = 0;
    while (n < cap && pos >= 0 && pos + 8 <= len) {
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
            if (pos + 16 > len)
                break;
            memcpy(&aux, p + pos + 8, 8);
            if (aux > (uint64_t)1 << 40) {
                status = -1;
                break;
            }
            total += (Py_ssize_t)aux;
        }
        if (pos + total > len)
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
};

PyMODINIT_FUNC PyInit__perfwalk(void)
{
    return PyModule_Create(&module);
}
