/*
 * Walks tracefs ring-buffer pages (trace_pipe_raw sub-buffers) and lists
 * every data event: its absolute timestamp and where its payload lies.
 *
 * Why C: events are variable-length and each timestamp is a running sum of
 * deltas, so the walk is inherently sequential; numpy cannot vectorize it and
 * a Python loop manages a few hundred thousand events per second.  Decoding
 * the payloads (tracepoint fields) stays in numpy, driven by the format files.
 *
 * Layout (events/header_page, events/header_event): a page is
 * u64 timestamp; u64 commit (low 27 bits: data bytes; bit 31: events were lost
 * before this page; bit 30: their count is stored as a u64 after the data);
 * then events, each with a u32 header: type_len (low 5 bits), time_delta (27).
 * type_len 1..28: payload of 4*type_len bytes; 0: u32 length (counting itself)
 * then the payload; 29: padding (delta 0: rest of page); 30: time extend;
 * 31: absolute timestamp.  Little-endian only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../../kernel_abi.h"

#define HEADER 16
/* the largest sub-buffer a kernel writes (order-10 pages of 64 KiB) */
#define MAX_PAGE (1 << 26)
#define COMMIT_MASK ((1u << 27) - 1)
#define MISSED_EVENTS (1u << 31)
#define MISSED_STORED (1u << 30)
#define TS_MSB (0xfULL << 59)

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

typedef struct {
    Py_buffer pages, times, offsets, lengths, info;
} Views;

static void release(Views *v) {
    Py_buffer *all[5] = {&v->pages, &v->times, &v->offsets, &v->lengths, &v->info};
    for (int i = 0; i < 5; i++)
        if (all[i]->obj != NULL) PyBuffer_Release(all[i]);
}

static PyObject *failure(Views *v, Py_ssize_t n, Py_ssize_t offset, const char *msg) {
    release(v);
    return Py_BuildValue("(nns)", n, offset, msg);
}

/* walk(pages, page_size, times, offsets, lengths, page_info, lenient)
 *   -> (n_events, error_offset, error_message)   error_offset -1 on success
 * page_info: int64 [n_pages][3] = page timestamp, missed (0 none, -1 unknown
 * count, -2 page skipped as corrupt (lenient), else count), index of the
 * page's first event.  With lenient set, a corrupt page loses its events and
 * the walk goes on; error_offset is then the first corrupt page's offset. */
static PyObject *walk(PyObject *self, PyObject *args) {
    PyObject *o_pages, *o_times, *o_offsets, *o_lengths, *o_info;
    Py_ssize_t page_size, n_bytes, cap, n_offsets, n_lengths, n_info;
    int lenient = 0;
    Views v;
    (void)self;
    memset(&v, 0, sizeof v);
    if (!PyArg_ParseTuple(args, "OnOOOO|p", &o_pages, &page_size, &o_times, &o_offsets,
                          &o_lengths, &o_info, &lenient))
        return NULL;
    if (!abi_view(&v.pages, o_pages, "pages", AK_BYTES, 1, 0, &n_bytes) ||
        !abi_view(&v.times, o_times, "times", AK_SIGNED, 8, 1, &cap) ||
        !abi_view(&v.offsets, o_offsets, "offsets", AK_SIGNED, 8, 1, &n_offsets) ||
        !abi_view(&v.lengths, o_lengths, "lengths", AK_SIGNED, 4, 1, &n_lengths) ||
        !abi_view(&v.info, o_info, "page_info", AK_SIGNED, 8, 1, &n_info)) {
        release(&v);
        return NULL;
    }
    if (page_size <= HEADER || page_size > MAX_PAGE || n_bytes % page_size != 0) {
        release(&v);
        PyErr_SetString(PyExc_ValueError, "buffer is not a whole number of pages");
        return NULL;
    }
    const uint8_t *buf = (const uint8_t *)v.pages.buf;
    Py_ssize_t n_pages = n_bytes / page_size;
    if (n_offsets != cap || n_lengths != cap || n_info != 3 * n_pages) {
        release(&v);
        PyErr_SetString(PyExc_ValueError, "output arrays of the wrong lengths");
        return NULL;
    }
    int64_t *times = (int64_t *)v.times.buf, *offsets = (int64_t *)v.offsets.buf;
    int32_t *lengths = (int32_t *)v.lengths.buf;
    int64_t *info = (int64_t *)v.info.buf;
    Py_ssize_t n = 0, first_bad = -1;
    const char *first_msg = "";

/* a corrupt page: fail, or (lenient) drop the page's events and go on */
#define BAD(off, msg) do { \
        if (!lenient) return failure(&v, n, (off), (msg)); \
        if (first_bad < 0) { first_bad = (off); first_msg = (msg); } \
        n = info[3 * p + 2]; info[3 * p + 1] = -2; goto next_page; \
    } while (0)

    for (Py_ssize_t p = 0; p < n_pages; p++) {
        const uint8_t *page = buf + p * page_size;
        Py_ssize_t base = p * page_size;
        uint64_t ts = rd64(page);
        uint64_t commit = rd64(page + 8);
        Py_ssize_t size = (Py_ssize_t)(commit & COMMIT_MASK);
        info[3 * p] = (int64_t)ts;
        info[3 * p + 1] = 0;
        info[3 * p + 2] = n;
        if (size > page_size - HEADER)
            BAD(base + 8, "page data length exceeds the page size");
        int64_t missed = 0;
        if (commit & MISSED_EVENTS) {
            missed = -1;
            if ((commit & MISSED_STORED) && HEADER + size + 8 <= page_size)
                missed = (int64_t)rd64(page + HEADER + size);
            if (missed == 0) missed = -1;
        }
        info[3 * p] = (int64_t)ts;
        info[3 * p + 1] = missed;
        info[3 * p + 2] = n;
        Py_ssize_t pos = HEADER, end = HEADER + size;
        while (pos < end) {
            if (end - pos < 4)
                BAD(base + pos, "event header runs past the page data");
            uint32_t h = rd32(page + pos);
            uint32_t type_len = h & 31, delta = h >> 5;
            Py_ssize_t payload, length, next;
            if (type_len == 29) {                 /* padding */
                if (delta == 0) break;            /* rest of the page */
                if (end - pos < 8)
                    BAD(base + pos, "padding runs past the page data");
                ts += delta;
                next = pos + 4 + (Py_ssize_t)rd32(page + pos + 4);
                if (next <= pos || next > end)
                    BAD(base + pos, "bad padding length");
                pos = next;
                continue;
            }
            if (type_len == 30 || type_len == 31) {  /* time extend / absolute stamp */
                if (end - pos < 8)
                    BAD(base + pos, "time stamp runs past the page data");
                uint64_t value = ((uint64_t)rd32(page + pos + 4) << 27) | delta;
                ts = (type_len == 30) ? ts + value : (value | (ts & TS_MSB));
                pos += 8;
                continue;
            }
            if (type_len == 0) {
                if (end - pos < 8)
                    BAD(base + pos, "event length runs past the page data");
                uint32_t total = rd32(page + pos + 4);
                if (total < 4 || (total & 3) != 0)
                    BAD(base + pos, "bad event length");
                payload = pos + 8;
                length = (Py_ssize_t)total - 4;
                next = pos + 4 + (Py_ssize_t)total;
            } else {
                payload = pos + 4;
                length = 4 * (Py_ssize_t)type_len;
                next = payload + length;
            }
            if (next > end)
                BAD(base + pos, "event runs past the page data");
            ts += delta;
            if (n >= cap)
                BAD(base + pos, "more events than the output can hold");
            times[n] = (int64_t)ts;
            offsets[n] = base + payload;
            lengths[n] = (int32_t)length;
            n++;
            pos = next;
        }
    next_page:;
    }
#undef BAD
    release(&v);
    return Py_BuildValue("(nns)", n, first_bad, first_msg);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "List the data events of whole ring-buffer pages."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pagewalk",
                                    "tracefs ring-buffer page walker", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pagewalk(void) {
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && (ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
                        ABI_CONST(mod, MAX_PAGE) < 0))
        Py_CLEAR(mod);
    return mod;
}
