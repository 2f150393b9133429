/*
 * Exact mode's second pass over a xentrace file as event columns: the pcpu
 * streams merged by (TSC, byte offset) (merge_core.h) straight into the
 * engine's event columns, for the analyses that take rows batch by batch (a
 * window, intervals).
 *
 * Why C: the generic path decodes chunks into columns, then sorts pending
 * rows with numpy at every chunk to merge the pcpus and builds each batch in
 * Python.  The mapped pages below every cursor are given back as the merge
 * moves on, so the resident size stays flat.
 *
 * Merger(buf, groups, member_keys, first_offsets, flags, release): groups, a
 *   tuple of one or two arrays of the pcpus carrying vCPU rows; member
 *   numbers by position in member_keys, and each member's first record's
 *   byte offset;
 * merger.start(slots, thread): slots, a tuple of (time, member, old, new)
 *   column tuples, filled in turn; with `thread`, each group is merged by a
 *   thread of its own, ahead of the caller (which accounts meanwhile);
 * merger.next() -> (slot, rows): the next filled slot (rows 0: the end); the
 *   slot handed out before is free again from this call on;
 * merger.close(): stop, and let go of the buffer and the slots.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel_abi.h"
#include "merge_core.h"

/* ---- groups: the merge split over producer threads ---------------------- */
/* With a second core, the pcpus are split into two groups, each merged by a
 * thread of its own into slots of rows (with their byte offsets); the caller
 * merges the two streams, two rows at a time being a single comparison, and
 * accounts the rows meanwhile.  Measured on the benchmark trace: the two
 * half merges cost no more than one merge of all pcpus, so the merge, the
 * longest stage, takes half the time. */

enum { SLOT_FREE, SLOT_READY, SLOT_HELD };
enum { MAX_GROUPS = 2, GROUP_SLOTS = 4, GROUP_ROWS = 1 << 14 };

typedef struct {
    Columns cols;
    int64_t *off;
    int64_t rows; /* READY or HELD: rows, or an M_ outcome */
    int state;
} Slot;

typedef struct {
    Merge merge;
    Slot slots[GROUP_SLOTS];
    int fill_at;  /* the producer's next slot */
    int take_at;  /* the caller's slot */
    int held;     /* the caller holds slots[take_at] */
    int64_t pos;  /* the caller's next row in it */
    int done;     /* the caller has had all its rows */
    int64_t low;  /* the lowest byte offset the producer still reads */
    pthread_t thread;
    int running;
    void *owner;
} Group;

typedef struct {
    PyObject_HEAD
    Py_buffer buf_view;
    const uint8_t *buf;
    int64_t len;
    Py_buffer *slot_views; /* the caller's output slots: 4 views each */
    int n_views;
    Columns *outs;
    int n_outs, out_at;
    int64_t cap;
    Group *groups;
    int n_groups;
    int threaded, started, stop, ended;
    int release;
    int64_t released;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int has_lock;
    int busy; /* in next() with the GIL released: the object must not change */
} Merger;

static void *produce(void *arg)
{
    Group *g = arg;
    Merger *self = g->owner;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        Slot *s = &g->slots[g->fill_at];
        while (!self->stop && s->state != SLOT_FREE)
            pthread_cond_wait(&self->changed, &self->lock);
        if (self->stop)
            break;
        pthread_mutex_unlock(&self->lock);
        Columns cols = s->cols;
        cols.off = s->off;
        int64_t rows = merge_rows(&g->merge, &cols, GROUP_ROWS);
        int64_t low = low_water(&g->merge);
        pthread_mutex_lock(&self->lock);
        s->rows = rows;
        s->state = SLOT_READY;
        g->low = low;
        pthread_cond_broadcast(&self->changed);
        if (rows <= 0)
            break;
        g->fill_at = (g->fill_at + 1) % GROUP_SLOTS;
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

/* Make g hold a slot with rows left, or find it done (the lock is held):
 * 0, or an M_ outcome from its producer. */
static int64_t hold_rows(Merger *self, Group *g)
{
    while (!g->done) {
        Slot *s = &g->slots[g->take_at];
        if (g->held && g->pos < s->rows)
            return 0;
        if (g->held) {
            s->state = SLOT_FREE;
            g->held = 0;
            g->take_at = (g->take_at + 1) % GROUP_SLOTS;
            pthread_cond_broadcast(&self->changed);
            continue;
        }
        while (s->state != SLOT_READY)
            pthread_cond_wait(&self->changed, &self->lock);
        s->state = SLOT_HELD;
        g->held = 1;
        g->pos = 0;
        if (s->rows < 0)
            return s->rows;
        g->done = s->rows == 0;
    }
    return 0;
}

/* copy row k of slot s to out row n */
static inline void put_row(Columns *out, int64_t n, const Slot *s, int64_t k)
{
    out->time[n] = s->cols.time[k];
    out->member[n] = s->cols.member[k];
    out->old[n] = s->cols.old[k];
    out->new[n] = s->cols.new[k];
}

/* Merge the held slots of a and b into out from row n until one of them or
 * out runs out; returns the new n.  Which group comes next is data, so the
 * choice is made with masks, not branches. */
static int64_t merge_two(Group *a, Group *b, Columns *out, int64_t n, int64_t cap)
{
    const Slot *sa = &a->slots[a->take_at], *sb = &b->slots[b->take_at];
    int64_t ia = a->pos, ib = b->pos, na = sa->rows, nb = sb->rows;
    while (n < cap && ia < na && ib < nb) {
        int64_t ta = sa->cols.time[ia], tb = sb->cols.time[ib];
        int64_t from_b = -(int64_t)((tb < ta) | ((tb == ta) & (sb->off[ib] < sa->off[ia])));
        const Slot *s = (const Slot *)((uintptr_t)sa ^ (((uintptr_t)sa ^ (uintptr_t)sb) &
                                                         (uintptr_t)from_b));
        put_row(out, n++, s, ia ^ ((ia ^ ib) & from_b));
        ia += 1 + from_b;
        ib -= from_b;
    }
    a->pos = ia;
    b->pos = ib;
    return n;
}

static int64_t copy_one(Group *g, Columns *out, int64_t n, int64_t cap)
{
    const Slot *s = &g->slots[g->take_at];
    while (n < cap && g->pos < s->rows)
        put_row(out, n++, s, g->pos++);
    return n;
}

/* Fill out with up to cap rows from the groups' producers (the GIL is
 * released): rows written, or an M_ outcome. */
static int64_t gather(Merger *self, Columns *out, int64_t cap)
{
    int64_t n = 0;
    pthread_mutex_lock(&self->lock);
    while (n < cap) {
        Group *live[MAX_GROUPS];
        int n_live = 0;
        for (int i = 0; i < self->n_groups; i++) {
            int64_t r = hold_rows(self, &self->groups[i]);
            if (r < 0) {
                pthread_mutex_unlock(&self->lock);
                return r;
            }
            if (!self->groups[i].done)
                live[n_live++] = &self->groups[i];
        }
        if (n_live == 0)
            break;
        pthread_mutex_unlock(&self->lock);
        n = n_live == 2 ? merge_two(live[0], live[1], out, n, cap)
                        : copy_one(live[0], out, n, cap);
        pthread_mutex_lock(&self->lock);
    }
    int64_t low = self->len;
    for (int i = 0; i < self->n_groups; i++)
        if (!self->groups[i].done && self->groups[i].low < low)
            low = self->groups[i].low;
    pthread_mutex_unlock(&self->lock);
    if (self->release)
        release_mapped(self->buf, self->len, &self->released, low);
    return n;
}

/* stop the producers and let go of everything (a producer stops within one
 * slot's rows and never takes the GIL, so it is joined with the GIL held) */
static void merger_clear(Merger *self)
{
    if (self->has_lock) {
        pthread_mutex_lock(&self->lock);
        self->stop = 1;
        pthread_cond_broadcast(&self->changed);
        pthread_mutex_unlock(&self->lock);
    }
    for (int i = 0; i < self->n_groups; i++) {
        Group *g = &self->groups[i];
        if (g->running)
            pthread_join(g->thread, NULL);
        for (int k = 0; k < GROUP_SLOTS; k++) {
            free(g->slots[k].cols.time);
            free(g->slots[k].cols.member);
            free(g->slots[k].cols.old);
            free(g->slots[k].cols.new);
            free(g->slots[k].off);
        }
        merge_free(&g->merge);
    }
    free(self->groups);
    self->groups = NULL;
    self->n_groups = 0;
    for (int i = 0; i < self->n_views; i++)
        PyBuffer_Release(&self->slot_views[i]);
    self->n_views = 0;
    free(self->slot_views);
    free(self->outs);
    self->slot_views = NULL;
    self->outs = NULL;
    self->n_outs = 0;
    if (self->buf_view.obj != NULL)
        PyBuffer_Release(&self->buf_view);
    if (self->has_lock) {
        pthread_mutex_destroy(&self->lock);
        pthread_cond_destroy(&self->changed);
        self->has_lock = 0;
    }
    self->threaded = self->started = 0;
}

static void merger_dealloc(Merger *self)
{
    merger_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- Python type --------------------------------------------------------- */

static int init_group(Merger *self, Group *g, PyObject *pcpus_o, const int64_t *keys,
                      const int64_t *offs, Py_ssize_t n_keys, int flags)
{
    Py_buffer pv;
    Py_ssize_t n_pcpus;
    const int32_t *pcpus = abi_view(&pv, pcpus_o, "pcpus", AK_SIGNED, 4, 0, &n_pcpus);
    if (pcpus == NULL)
        return -1;
    int status = merge_init(&g->merge, pcpus, n_pcpus, keys, offs, n_keys);
    PyBuffer_Release(&pv);
    for (int k = 0; status == 0 && k < GROUP_SLOTS; k++) {
        Slot *s = &g->slots[k];
        s->cols.time = malloc(GROUP_ROWS * sizeof *s->cols.time);
        s->cols.member = malloc(GROUP_ROWS * sizeof *s->cols.member);
        s->cols.old = malloc(GROUP_ROWS);
        s->cols.new = malloc(GROUP_ROWS);
        s->off = malloc(GROUP_ROWS * sizeof *s->off);
        if (!s->cols.time || !s->cols.member || !s->cols.old || !s->cols.new || !s->off)
            status = M_NOMEM;
    }
    g->merge.buf = self->buf;
    g->merge.len = self->len;
    g->merge.flags = flags & F_LENIENT;
    g->owner = self;
    g->low = 0;
    if (status == M_CHANGED)
        PyErr_SetString(PyExc_ValueError, "Merger: impossible pcpu or vCPU key, or a repeat");
    else if (status == M_NOMEM)
        PyErr_NoMemory();
    return status < 0 ? -1 : 0;
}

/* the groups' pcpus: every pcpu in one group at most (the others check each
 * group alone) */
static int groups_disjoint(PyObject *groups)
{
    uint8_t seen[MAX_PCPUS];
    memset(seen, 0, sizeof seen);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(groups); i++) {
        Py_buffer pv;
        Py_ssize_t n;
        const int32_t *p = abi_view(&pv, PyTuple_GET_ITEM(groups, i), "pcpus", AK_SIGNED, 4, 0,
                                    &n);
        if (p == NULL)
            return -1;
        int bad = 0;
        for (Py_ssize_t j = 0; j < n && !bad; j++) {
            bad = p[j] >= 0 && p[j] < MAX_PCPUS && seen[p[j]];
            if (p[j] >= 0 && p[j] < MAX_PCPUS)
                seen[p[j]] = 1;
        }
        PyBuffer_Release(&pv);
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "Merger: a pcpu in two groups");
            return -1;
        }
    }
    return 0;
}

/* Merger(buf, groups, member_keys, first_offsets, flags, release) */
static int merger_init(Merger *self, PyObject *args, PyObject *kw)
{
    PyObject *buf_o, *groups, *keys_o, *offs_o;
    int flags, release;
    if (kw != NULL && PyDict_GET_SIZE(kw) != 0) {
        PyErr_SetString(PyExc_TypeError, "Merger takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOOOip", &buf_o, &groups, &keys_o, &offs_o, &flags, &release))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_ValueError, "Merger is busy");
        return -1;
    }
    merger_clear(self);
    if (!PyTuple_Check(groups) || PyTuple_GET_SIZE(groups) < 1 ||
        PyTuple_GET_SIZE(groups) > MAX_GROUPS) {
        PyErr_Format(PyExc_ValueError, "groups must be a tuple of 1 to %d pcpu arrays",
                     MAX_GROUPS);
        return -1;
    }
    if (groups_disjoint(groups) < 0)
        return -1;
    Py_ssize_t len;
    if ((self->buf = abi_view(&self->buf_view, buf_o, "buf", AK_BYTES, 1, 0, &len)) == NULL)
        return -1;
    self->len = len;
    self->release = release;
    self->released = 0;
    Py_buffer kv, ov;
    Py_ssize_t n_keys, n_offs;
    const int64_t *keys = abi_view(&kv, keys_o, "member_keys", AK_SIGNED, 8, 0, &n_keys);
    const int64_t *offs =
        keys == NULL ? NULL : abi_view(&ov, offs_o, "first_offsets", AK_SIGNED, 8, 0, &n_offs);
    int status = offs == NULL ? -1 : 0;
    if (status == 0 && n_offs != n_keys) {
        PyErr_SetString(PyExc_ValueError, "Merger: keys and first offsets differ in length");
        status = -1;
    }
    if (status == 0) {
        self->n_groups = (int)PyTuple_GET_SIZE(groups);
        self->groups = calloc((size_t)self->n_groups, sizeof *self->groups);
        if (self->groups == NULL) {
            self->n_groups = 0;
            PyErr_NoMemory();
            status = -1;
        }
    }
    for (int i = 0; status == 0 && i < self->n_groups; i++)
        status = init_group(self, &self->groups[i], PyTuple_GET_ITEM(groups, i), keys, offs,
                            n_keys, flags);
    if (keys != NULL)
        PyBuffer_Release(&kv);
    if (offs != NULL)
        PyBuffer_Release(&ov);
    if (status == 0 && (pthread_mutex_init(&self->lock, NULL) != 0 ||
                        pthread_cond_init(&self->changed, NULL) != 0)) {
        PyErr_NoMemory();
        status = -1;
    } else if (status == 0) {
        self->has_lock = 1;
    }
    if (status < 0) {
        merger_clear(self);
        return -1;
    }
    return 0;
}

/* acquire the caller's output slots: 0, or -1 with an exception */
static int take_slots(Merger *self, PyObject *slots)
{
    if (!PyTuple_Check(slots) || PyTuple_GET_SIZE(slots) < 1 || PyTuple_GET_SIZE(slots) > 64) {
        PyErr_SetString(PyExc_ValueError, "slots must be a tuple of 1 to 64 column tuples");
        return -1;
    }
    int n = (int)PyTuple_GET_SIZE(slots);
    self->outs = calloc((size_t)n, sizeof *self->outs);
    self->slot_views = calloc((size_t)n * 4, sizeof *self->slot_views);
    if (self->outs == NULL || self->slot_views == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->n_outs = n;
    static const char *names[4] = {"time", "member", "old", "new"};
    static const Py_ssize_t sizes[4] = {8, 4, 1, 1};
    for (int k = 0; k < n; k++) {
        PyObject *cols = PyTuple_GET_ITEM(slots, k);
        if (!PyTuple_Check(cols) || PyTuple_GET_SIZE(cols) != 4) {
            PyErr_SetString(PyExc_ValueError, "a slot must be a (time, member, old, new) tuple");
            return -1;
        }
        void *ptr[4];
        for (int j = 0; j < 4; j++) {
            Py_ssize_t count;
            ptr[j] = abi_view(&self->slot_views[self->n_views], PyTuple_GET_ITEM(cols, j),
                              names[j], AK_SIGNED, sizes[j], 1, &count);
            if (ptr[j] == NULL)
                return -1;
            self->n_views++;
            if ((k > 0 || j > 0) && count != self->cap) {
                PyErr_SetString(PyExc_ValueError, "slot columns differ in length");
                return -1;
            }
            self->cap = count;
        }
        self->outs[k] = (Columns){ptr[0], ptr[1], ptr[2], ptr[3], NULL, 0};
    }
    if (self->cap < 1) {
        PyErr_SetString(PyExc_ValueError, "slot columns are empty");
        return -1;
    }
    return 0;
}

/* start(slots, thread) */
static PyObject *merger_start(Merger *self, PyObject *args)
{
    PyObject *slots;
    int thread;
    if (!PyArg_ParseTuple(args, "Op", &slots, &thread))
        return NULL;
    if (self->buf_view.obj == NULL || self->started || self->busy) {
        PyErr_SetString(PyExc_ValueError, "Merger: closed, or started already");
        return NULL;
    }
    if (!thread && self->n_groups != 1) {
        PyErr_SetString(PyExc_ValueError, "Merger: more than one group needs threads");
        return NULL;
    }
    if (take_slots(self, slots) < 0) {
        merger_clear(self);
        return NULL;
    }
    self->started = 1;
    self->out_at = 0;
    self->stop = self->ended = 0;
    /* without threads the one group merges straight into the caller's slots
     * and gives pages back itself */
    self->groups[0].merge.release = !thread && self->release;
    for (int i = 0; thread && i < self->n_groups; i++) {
        Group *g = &self->groups[i];
        g->running = pthread_create(&g->thread, NULL, produce, g) == 0;
        if (!g->running) {
            merger_clear(self);
            return PyErr_NoMemory();
        }
    }
    self->threaded = thread;
    Py_RETURN_NONE;
}

static PyObject *merger_next(Merger *self, PyObject *noargs)
{
    (void)noargs;
    if (!self->started || self->busy) {
        PyErr_SetString(PyExc_ValueError, "Merger: not started, closed or busy");
        return NULL;
    }
    if (self->ended)
        return Py_BuildValue("(iL)", 0, 0LL);
    int slot = self->out_at;
    Columns *out = &self->outs[slot];
    int64_t rows;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rows = self->threaded ? gather(self, out, self->cap)
                          : merge_rows(&self->groups[0].merge, out, self->cap);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    self->out_at = (self->out_at + 1) % self->n_outs;
    if (rows <= 0)
        self->ended = 1;
    if (rows == M_NOMEM)
        return PyErr_NoMemory();
    if (rows < 0) {
        PyErr_SetString(PyExc_ValueError, "the file is not what the first pass read");
        return NULL;
    }
    return Py_BuildValue("(iL)", slot, (long long)rows);
}

static PyObject *merger_close(Merger *self, PyObject *noargs)
{
    (void)noargs;
    if (self->busy) {
        PyErr_SetString(PyExc_ValueError, "Merger is busy");
        return NULL;
    }
    merger_clear(self);
    Py_RETURN_NONE;
}

static PyMethodDef merger_methods[] = {
    {"start", (PyCFunction)merger_start, METH_VARARGS,
     "start(slots, thread): the caller's slots, filled in turn; with `thread`, each group "
     "merged by a thread of its own"},
    {"next", (PyCFunction)merger_next, METH_NOARGS,
     "next() -> (slot, rows): the next filled slot; rows 0: the merge is over"},
    {"close", (PyCFunction)merger_close, METH_NOARGS,
     "close(): stop, and let go of the buffer and the slots"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MergerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runstate.sources.xentrace._merge.Merger",
    .tp_basicsize = sizeof(Merger),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Exact mode's second pass over a xentrace file: pcpu streams merged by TSC.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)merger_init,
    .tp_dealloc = (destructor)merger_dealloc,
    .tp_methods = merger_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_merge", "exact mode's second pass over a xentrace file", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__merge(void)
{
    if (PyType_Ready(&MergerType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL)
        return NULL;
    Py_INCREF(&MergerType);
    if (PyModule_AddObject(mod, "Merger", (PyObject *)&MergerType) < 0 ||
        ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
        ABI_CONST(mod, MAX_PCPUS) < 0 || ABI_CONST(mod, MAX_GROUPS) < 0)
        Py_CLEAR(mod);
    return mod;
}
