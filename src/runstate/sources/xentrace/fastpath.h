/*
 * What the two passes of exact mode's fast path share (_job.c, _merge.c):
 * the vCPU table, and giving mapped pages back once a walk is past them.
 */
#ifndef RUNSTATE_XENTRACE_FASTPATH_H
#define RUNSTATE_XENTRACE_FASTPATH_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- vCPU table: key (dom << 16 | vcpu) -> number ---------------------- */
/* Open addressing, linear probing, at most half full, so a probe always
 * ends at the key or an empty slot.  Numbers are given in insertion order. */

typedef struct {
    int64_t *keys; /* slot -> key, -1 empty */
    int32_t *nums; /* slot -> number */
    uint64_t mask;
    int64_t n;
} Table;

static inline uint64_t table_hash(int64_t key)
{
    return ((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 20;
}

/* an empty table for `want` keys; -1 out of memory */
static inline int table_init(Table *t, int64_t want)
{
    uint64_t size = 64;
    while (size < 2 * (uint64_t)want + 2)
        size *= 2;
    t->keys = malloc(size * sizeof *t->keys);
    t->nums = malloc(size * sizeof *t->nums);
    if (t->keys == NULL || t->nums == NULL) {
        free(t->keys);
        free(t->nums);
        t->keys = NULL;
        t->nums = NULL;
        return -1;
    }
    memset(t->keys, 0xff, size * sizeof *t->keys);
    t->mask = size - 1;
    t->n = 0;
    return 0;
}

static inline void table_free(Table *t)
{
    free(t->keys);
    free(t->nums);
    t->keys = NULL;
    t->nums = NULL;
}

/* the slot holding key, or the empty slot where it would go */
static inline uint64_t table_slot(const Table *t, int64_t key)
{
    uint64_t h = table_hash(key);
    while (t->keys[h & t->mask] != key && t->keys[h & t->mask] >= 0)
        h++;
    return h & t->mask;
}

/* the number of key, -1 if absent */
static inline int32_t table_find(const Table *t, int64_t key)
{
    uint64_t s = table_slot(t, key);
    return t->keys[s] == key ? t->nums[s] : -1;
}

/* insert a key not in the table as number t->n; -1 if out of memory */
static inline int table_add(Table *t, int64_t key)
{
    if (t->n >= INT32_MAX)
        return -1;
    if (2 * (uint64_t)(t->n + 1) > t->mask + 1) {
        Table bigger;
        if (table_init(&bigger, 2 * t->n + 2) < 0)
            return -1;
        for (uint64_t s = 0; s <= t->mask; s++) {
            if (t->keys[s] >= 0) {
                uint64_t d = table_slot(&bigger, t->keys[s]);
                bigger.keys[d] = t->keys[s];
                bigger.nums[d] = t->nums[s];
            }
        }
        bigger.n = t->n;
        table_free(t);
        *t = bigger;
    }
    uint64_t s = table_slot(t, key);
    t->keys[s] = key;
    t->nums[s] = (int32_t)t->n++;
    return 0;
}

/* ---- rows the first pass keeps for the second ---------------------------- */
/* Decoding a record costs as much as everything else the second pass does
 * with its row, so the first pass keeps the vCPU rows it decodes, window by
 * window, up to a budget, and the second pass merges those instead of
 * decoding them again.
 *
 * A row's fields besides its TSC and offset, as the merge carries them in
 * the low bits of a word (merge_core.h): the vCPU (its number in a table of
 * the pass), whether it is a continue-running record, its old and new state. */
enum { KEPT_VCPU_SHIFT = 4, KEPT_CONTINUE_BIT = 23, KEPT_OFF_SHIFT = 24 };
#define MAX_KEPT_VCPUS (1LL << (KEPT_CONTINUE_BIT - KEPT_VCPU_SHIFT))
/* bytes of a vCPU record at the least (header, TSC, one data word): a window
 * of n bytes has at most n / MIN_ROW_BYTES rows */
enum { MIN_ROW_BYTES = 16 };

static inline int32_t row_fields(int continues, int64_t vcpu, int old, int new)
{
    return (int32_t)(continues << KEPT_CONTINUE_BIT | vcpu << KEPT_VCPU_SHIFT | old << 2 | new);
}

/* A kept row in 8 bytes (memory taken fresh costs about as much as writing
 * it, on some systems more): the step of its TSC from the row before it of
 * its window and part (the first row's from the window's base), and its
 * fields.  A step of 2^32 cycles or more (1.8 s at 2.4 GHz without a row in
 * between) is split: a slot with STEP_HIGH in `fields` holds its high half,
 * the row's own slot the low half.  Rows of a window need no offset: at one
 * TSC, rows of two windows come in the order of the windows' headers. */
typedef struct {
    uint32_t step;
    int32_t fields;
} KeptRow;

#define STEP_HIGH INT32_MIN

/* a window whose vCPU rows were kept: where its header is, its rows (slots),
 * the TSC its first row steps from, and the TSC its pcpu had at its end */
typedef struct {
    int64_t header;
    const KeptRow *rows;
    int64_t n, base, last_tsc;
} KeptWindow;

/* Memory for many rows, written once from the start (NULL if there is none;
 * free with big_free): its pages are taken as the rows are written, in huge
 * pages where the system gives them for the asking (transparent huge pages
 * in "madvise" or "always" mode): one fault per 2 MB instead of one per
 * 4 kB (the 15 MB of rows of a 41 MB trace: 8 faults instead of about 3800).
 * Taking the pages ahead instead (MADV_POPULATE_WRITE) costs less system time
 * too, but holds the process's memory map while the pages are zeroed:
 * measured, the command's start-up, which maps memory all along, ran half as
 * slow again beside it; a fault as the rows reach a page holds only that
 * mapping. */
static inline void *big_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: 4 kB pages where refused */
#endif
    return p;
}

static inline void big_free(void *p, size_t bytes)
{
    if (p != NULL)
        munmap(p, bytes);
}

/* ---- mapped pages ------------------------------------------------------ */

/* Drop the whole pages of [*done, upto) of a file mapping of `len` bytes from
 * the resident set (they stay in the page cache; a later read maps them
 * again), and move *done on.  Only for a shared file mapping starting at
 * `base` (a page boundary): on private or anonymous memory MADV_DONTNEED
 * would lose data, so the caller says whether `base` is one (the Python side
 * passes an mmap).  `upto` is clamped to the mapping: past it lies other
 * memory of the process. */
static inline void release_mapped(const uint8_t *base, int64_t len, int64_t *done, int64_t upto)
{
#ifdef MADV_DONTNEED
    int64_t page = (int64_t)sysconf(_SC_PAGESIZE);
    if (page <= 0 || (uintptr_t)base % (uintptr_t)page != 0)
        return;
    if (upto > len)
        upto = len;
    int64_t end = upto - upto % page;
    if (end > *done && madvise((void *)(base + *done), (size_t)(end - *done), MADV_DONTNEED) == 0)
        *done = end;
#else
    (void)base;
    (void)len;
    (void)done;
    (void)upto;
#endif
}

/* bytes walked between two page releases: the resident size of a walk stays
 * below this however large the file */
#define RELEASE_STEP (8LL << 20)

#endif
