/* The perf.data C pass (_perfscan.c): its types, growable arrays and CPU table.
 *
 * The pass itself (perfscan_records.h, perfscan_order.h, perfscan_pass.h) runs without
 * the GIL: it allocates with PyMem_Raw* and reports failures in the Scanner.
 */
#ifndef RUNSTATE_PERFSCAN_H
#define RUNSTATE_PERFSCAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    REC_LOST = 2, REC_COMM = 3, REC_FORK = 7, REC_SAMPLE = 9, REC_LOST_SAMPLES = 13,
    REC_FINISHED_ROUND = 68, REC_AUXTRACE = 71, REC_COMPRESSED = 81
};
enum { K_SWITCH = 0 };
enum { STOP_CHUNK = 0, STOP_LOSS = 1, STOP_FULL = 2, STOP_END = 3, STOP_ERROR = -1 };
/* error codes: a record size below 8 bytes, a partial record at the end, a
 * compressed record, samples too short for their layout, a sample of a
 * tracepoint whose format cannot be read */
enum { E_RECORD_SIZE = 1, E_TAIL = 2, E_COMPRESSED = 3, E_SHORT = 4, E_FORMAT = 5 };
enum { MAX_KINDS = 8, COMM_MAX = 64 };
/* the Python reader read 8 MiB blocks: names and short-sample counts keep its grain */
#define BLOCK ((int64_t)8 << 20)
#define WINDOW ((int64_t)8 << 20)
#define PID_LIMIT (1 << 22)
#define MAX_RECORD ((int64_t)65536 + 16)
/* the walk reads the file this far ahead of itself (memory latency, not bandwidth, is
 * what a record walk waits for) */
#define PREFETCH 8192
/* CPUs below this are found by index, others by hash */
#define DIRECT_CPUS 1024

typedef struct {
    int64_t time, pstate;
    int32_t cpu, pid, other, actor;
    int8_t kind;
} Ev;

typedef struct {
    int off, size, sign;
} Fld;

/* a field read as 8 bytes and cut to its size (see Kind.wide) */
typedef struct {
    int at, shift, sign, present;
    int64_t absent; /* the value of a field the format lacks */
} Wide;

typedef struct {
    int64_t id;
    int kind, need, bad;
    Fld f[4]; /* pid, other, prev_state, actor */
    Fld comm[2];
    /* every field lies 8 bytes or more before the end of the data `need` guarantees:
     * each is read as 8 bytes and cut, without a branch on its size */
    int wide;
    Wide w[4];
} Kind;

typedef struct {
    int64_t cpu, begin, end, count, seq;
    int has_count;
} Loss;

enum { M_RELEASE = 0, M_LOSS = 1 };
typedef struct {
    Py_ssize_t at; /* released events before it */
    int type;
    Loss loss;
} Mark;

typedef struct {
    int32_t cpu;
    int used, has_out;
    int64_t last_file, last_out;
    int64_t stamp; /* the release that last set last_out */
    int64_t seen_stamp, seen_time; /* its last event passed in the current release */
} Cpu;

typedef struct {
    int32_t pid, key;
    int len;
    char comm[COMM_MAX];
} Name;

typedef struct {
    void *v;
    Py_ssize_t n, cap;
} Vec;

/* a COMM or FORK record: its offset in the file, and its bytes in side_bytes */
typedef struct {
    int64_t pos, off, size;
    uint32_t type;
} Side;

/* what the names pass found, in order: a chunk of rows [start, stop), or a loss */
enum { ITEM_CHUNK = 0, ITEM_LOSS = 1 };
typedef struct {
    int type;
    Py_ssize_t start, stop;
    Loss loss;
} Item;

typedef struct {
    PyObject_HEAD
    int fd;
    int64_t data_off, data_end, pos;
    const uint8_t *map;
    int64_t map_off, map_len;
    int mapped; /* 1: mmap, 0: a malloc'd copy */
    /* layout */
    int64_t l_time, l_cpu, l_id, l_bc, t_at, cpu_at;
    int callchain, multi, truncated, lenient;
    int64_t n_streams;
    Kind kinds[MAX_KINDS];
    int n_kinds;
    /* tracepoint id -> index in kinds + 1 (0: not a sched kind) */
    uint8_t kind_index[65536];
    /* the sample ids of the sched tracepoints, hashed: 1 << id_bits slots, at least
     * twice as many as ids */
    int64_t *id_slots;
    uint8_t *id_used;
    int id_bits;
    /* round order: held events, the first `released` of them released (in order) and
     * the first `head` of those handed out */
    Vec held, tmp, runs, pending;
    Py_ssize_t released, head;
    int64_t n_releases;
    int has_limit, has_max, has_released, ended;
    int64_t limit, max_time, released_until, dropped;
    Cpu *cpus;
    Py_ssize_t cpu_cap, n_cpus;
    int32_t direct[DIRECT_CPUS]; /* cpu -> slot in cpus + 1, 0: none yet */
    /* where the released events stop: round ends and losses */
    Vec marks;
    Py_ssize_t marks_head, since_chunk;
    Loss taken;
    /* what the pass learns */
    int64_t untimed, malformed, tail_bytes, n_losses;
    uint8_t *active;
    int32_t *name_slot;
    Vec names;
    Vec side, side_bytes;
    /* a failure to read the file (its errno; 0: none) */
    int os_errno;
    /* the names pass on its own thread (perfscan_pass.h): its columns (Blocks the
     * Scanner owns) and where they start, the items it found, how it ended */
    PyObject *own[7];
    void *own_at[7];
    Py_ssize_t own_cap, pass_rows, pass_count;
    Vec items;
    pthread_t thread;
    int pass_started, pass_running, pass_overflow, pass_rc, pass_guess, cancel;
    /* past an overflow of a file not cut short, the pass only names (perfscan_pass.h):
     * no event is held, ordered or handed out, each one just counted and its tids
     * marked active; ticks paces its checks for a cancel */
    int names_only;
    int64_t ticks;
    /* a read() runs (without the GIL) */
    int reading;
    /* a pending short-sample error: its block, first offset, count */
    int64_t short_block, short_off, short_n;
    int err_code, err_kind;
    int64_t err_off, err_n;
    int init_called, initialized;
} Scanner;

/* room for `need` items (-1: out of memory; no Python error is set: the scan may run
 * without the GIL, see perfscan_pass.h) */
static int grow(Vec *v, Py_ssize_t need, size_t item)
{
    if (need <= v->cap)
        return 0;
    Py_ssize_t cap = v->cap ? v->cap : 64;
    while (cap < need)
        cap *= 2;
    void *p = PyMem_RawRealloc(v->v, (size_t)cap * item);
    if (p == NULL)
        return -1;
    v->v = p;
    v->cap = cap;
    return 0;
}

/* ---- CPUs ------------------------------------------------------------------- */

static Cpu *cpu_hash(Scanner *s, int64_t cpu, int insert);

/* the CPU's slot (created with insert; NULL: none, or out of memory) */
static inline Cpu *cpu_find(Scanner *s, int64_t cpu, int insert)
{
    if (cpu >= 0 && cpu < DIRECT_CPUS && s->direct[cpu])
        return &s->cpus[s->direct[cpu] - 1];
    return cpu_hash(s, cpu, insert);
}

static Cpu *cpu_hash(Scanner *s, int64_t cpu, int insert)
{
    if (s->cpu_cap == 0 || (insert && 2 * (s->n_cpus + 1) > s->cpu_cap)) {
        if (!insert)
            return NULL;
        Py_ssize_t cap = s->cpu_cap ? 2 * s->cpu_cap : 16;
        Cpu *fresh = PyMem_RawCalloc((size_t)cap, sizeof(Cpu));
        if (fresh == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < s->cpu_cap; i++) {
            if (!s->cpus[i].used)
                continue;
            Py_ssize_t h = (Py_ssize_t)((uint32_t)s->cpus[i].cpu * 2654435761u) & (cap - 1);
            while (fresh[h].used)
                h = (h + 1) & (cap - 1);
            fresh[h] = s->cpus[i];
        }
        PyMem_RawFree(s->cpus);
        s->cpus = fresh;
        s->cpu_cap = cap;
        memset(s->direct, 0, sizeof s->direct);
        for (Py_ssize_t i = 0; i < cap; i++)
            if (fresh[i].used && fresh[i].cpu >= 0 && fresh[i].cpu < DIRECT_CPUS)
                s->direct[fresh[i].cpu] = (int32_t)i + 1;
    }
    Py_ssize_t h = (Py_ssize_t)((uint32_t)cpu * 2654435761u) & (s->cpu_cap - 1);
    while (s->cpus[h].used) {
        if (s->cpus[h].cpu == cpu)
            return &s->cpus[h];
        h = (h + 1) & (s->cpu_cap - 1);
    }
    if (!insert)
        return NULL;
    s->cpus[h].used = 1;
    s->cpus[h].cpu = (int32_t)cpu;
    s->n_cpus++;
    if (cpu >= 0 && cpu < DIRECT_CPUS)
        s->direct[cpu] = (int32_t)h + 1;
    return &s->cpus[h];
}

#endif
