/*
 * The merge of exact mode's second pass (_merge.c, _job.c): each pcpu's
 * windows walked as its own time-ordered stream, the streams merged by
 * (TSC, byte offset).
 *
 * A cursor per pcpu decodes its records (walk_core.h, as the generic path
 * does) a few dozen rows ahead, and a loser tree picks the next row.  Equal
 * TSCs come out in file order, as the generic path's stable sort leaves them.
 * A continue-running row is kept only as its vCPU's first: the files this
 * pass reads have no loss windows (the first pass sends the others to the
 * generic path), so that is the vCPU's first record, which the first pass
 * found: its byte offset tells it, and the cursor drops the others before
 * they cost a merge step.
 *
 * Window headers are read once, in file order, by whichever cursor needs its
 * next window; windows of other pcpus met on the way wait in their cursors'
 * queues.
 */
#ifndef RUNSTATE_XENTRACE_MERGE_CORE_H
#define RUNSTATE_XENTRACE_MERGE_CORE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "walk_core.h"
#include "fastpath.h"

/* ---- per-pcpu cursors --------------------------------------------------- */

/* a window waiting for its pcpu's cursor (queues are linked through `next`),
 * and its rows if the first pass kept them */
typedef struct {
    int64_t start, end;
    const KeptWindow *kept;
    int32_t next;
} Pending;

/* rows a cursor decodes at a time: one pcpu's records decode in a tight loop,
 * and the merge reads them from a few cache lines */
enum { AHEAD = 64 };

/* A row to merge: its TSC, and a key word: its byte offset (a kept row's
 * window's header's: see KeptRow) above its fields (fastpath.h), whose vCPU
 * is its number in the merge's table.  Ordered as words, rows of one TSC come
 * in the order of their offsets, and the winner of a match carries the whole
 * row: nothing more to load once it has won. */
typedef struct {
    int64_t time, key;
} MergeRow;

static inline int64_t row_key(int64_t off, int32_t fields)
{
    return off << KEPT_OFF_SHIFT | (uint32_t)fields;
}

/* A cursor's rows: decoded into its own buffer, or those the first pass kept
 * of its window, read where they are. */
typedef struct {
    int64_t off, wend, tsc; /* where its walk stands (see Walk) */
    int64_t pcpu;
    int32_t head, tail;     /* queued windows, -1: none */
    const MergeRow *next, *end; /* the decoded rows to merge */
    /* in a window whose rows the first pass kept (in_kept): its next slot,
     * the end of its slots, the TSC of the row there, the window's header,
     * and the TSC the pcpu has at the window's end */
    const KeptRow *kept, *kept_end;
    int64_t kept_time, kept_header, kept_last;
    int in_kept;
    MergeRow rows[AHEAD];
} Cursor;

/* Cursor c's kept row at or after c->kept, its TSC stepped to: 1, or 0 if
 * the window's rows are over. */
static inline int kept_row(Cursor *c)
{
    int64_t high = 0;
    while (c->kept < c->kept_end && c->kept->fields == STEP_HIGH)
        high = (int64_t)(c->kept++)->step << 32;
    if (c->kept >= c->kept_end)
        return 0;
    c->kept_time += high + c->kept->step;
    return 1;
}

/* what fits a row's word: vCPUs below MAX_KEPT_VCPUS, offsets below 2^39 */
#define MAX_MERGE_BYTES (1LL << (63 - KEPT_OFF_SHIFT))

static inline int64_t key_off(int64_t key)
{
    return key >> KEPT_OFF_SHIFT;
}

/* the vCPU of a row's word: its number in the merge's table */
static inline int32_t key_vcpu(int64_t key)
{
    return (int32_t)((key >> KEPT_VCPU_SHIFT) & (MAX_KEPT_VCPUS - 1));
}

static inline int key_continues(int64_t key)
{
    return (int)(key >> KEPT_CONTINUE_BIT) & 1;
}

static inline int key_old(int64_t key)
{
    return (int)(key >> 2) & 3;
}

static inline int key_new(int64_t key)
{
    return (int)key & 3;
}

/* the key of a cursor with no rows left: after every real row */
#define DONE_KEY INT64_MAX

/* a player of the loser tree: a cursor and the key of its next row */
typedef struct {
    int64_t time, key;
    int32_t leaf;
} Node;

/* outcomes of the merge's steps (rows written are >= 0) */
enum { M_NOMEM = -1, M_CHANGED = -2 };

typedef struct {
    const uint8_t *buf;
    int64_t len;
    int flags, release;
    int64_t released;
    int64_t headers;         /* the next window header no cursor has been given yet */
    int32_t slot[MAX_PCPUS]; /* pcpu -> cursor, -1: a pcpu without vCPU rows */
    Cursor *cursors;
    int n_cursors;
    /* loser tree over the cursors' next rows: nodes 1..n_leaves-1 hold the
     * loser of their match, node 0 the winner; leaves past n_cursors, and
     * cursors with no rows left, play with DONE_KEY */
    Node *tree;
    int n_leaves;
    int started;
    Pending *pending;
    int32_t n_pending, cap_pending, free_pending;
    Table table;           /* vCPU key -> its number */
    int64_t *first_off;    /* per vCPU: its first record's byte offset */
    const uint8_t *keep;   /* per vCPU: 1 if its rows are merged (NULL: all are) */
    /* the windows whose rows the first pass kept, in file order (the next
     * one's header not yet reached), their vCPUs numbered as in the table */
    const KeptWindow *kept;
    int64_t n_kept, next_kept;
} Merge;

static void merge_free(Merge *m)
{
    free(m->cursors);
    free(m->tree);
    free(m->pending);
    free(m->first_off);
    table_free(&m->table);
    memset(m, 0, sizeof *m);
}

static int queue_window(Merge *m, Cursor *c, int64_t start, int64_t end,
                        const KeptWindow *kept)
{
    int32_t i = m->free_pending;
    if (i >= 0) {
        m->free_pending = m->pending[i].next;
    } else {
        if (m->n_pending == m->cap_pending) {
            if (m->cap_pending > INT32_MAX / 2)
                return M_NOMEM;
            int32_t cap = m->cap_pending ? 2 * m->cap_pending : 64;
            Pending *grown = realloc(m->pending, (size_t)cap * sizeof *grown);
            if (grown == NULL)
                return M_NOMEM;
            m->pending = grown;
            m->cap_pending = cap;
        }
        i = m->n_pending++;
    }
    m->pending[i] = (Pending){start, end, kept, -1};
    if (c->tail >= 0)
        m->pending[c->tail].next = i;
    else
        c->head = i;
    c->tail = i;
    return 0;
}

/* Put cursor c at the start of its pcpu's next window: 1, or 0 if it has
 * none, or an M_ outcome. */
static int next_window(Merge *m, Cursor *c)
{
    while (c->head < 0) {
        if (m->len - m->headers < 12)
            return 0;
        const KeptWindow *kept = NULL;
        while (m->next_kept < m->n_kept && m->kept[m->next_kept].header < m->headers)
            m->next_kept++; /* cannot be: the first pass kept windows at headers */
        if (m->next_kept < m->n_kept && m->kept[m->next_kept].header == m->headers)
            kept = &m->kept[m->next_kept++];
        Walk w = {.buf = m->buf, .base = 0, .end = m->len, .off = m->headers, .wend = -1,
                  .pcpu_tsc = NULL, .flags = 0};
        if (enter_window(&w) != 0)
            return M_CHANGED; /* the first pass read every header */
        m->headers = w.wend;
        int32_t s = m->slot[w.pcpu];
        if (s >= 0 && w.wend > w.off) {
            int r = queue_window(m, &m->cursors[s], w.off, w.wend, kept);
            if (r < 0)
                return r;
        }
    }
    Pending *p = &m->pending[c->head];
    c->off = p->start;
    c->wend = p->end;
    c->in_kept = p->kept != NULL;
    if (c->in_kept) {
        c->kept = p->kept->rows;
        c->kept_end = p->kept->rows + p->kept->n;
        c->kept_time = p->kept->base;
        c->kept_header = p->kept->header;
        c->kept_last = p->kept->last_tsc;
    }
    int32_t done = c->head;
    c->head = p->next;
    if (c->head < 0)
        c->tail = -1;
    p->next = m->free_pending;
    m->free_pending = done;
    return 1;
}

/* Cursor c's next rows (none: its pcpu's data is over): those the first
 * pass kept of its next window, or the next ones decoded: 0, or an M_
 * outcome. */
static int refill(Merge *m, Cursor *c)
{
    /* the pcpu's last TSC stays in the cursor: next_window enters windows
     * without the walker's bookkeeping (the first pass counted everything) */
    Walk w = {.buf = m->buf, .base = 0, .end = m->len, .off = c->off, .wend = c->wend,
              .pcpu = c->pcpu, .tsc = c->tsc, .pcpu_tsc = NULL, .flags = m->flags};
    if (c->in_kept) { /* its kept rows are merged: the window is over */
        c->in_kept = 0;
        w.off = w.wend;
        w.tsc = c->kept_last;
    }
    int r = 0, n = 0;
    while (n < AHEAD && r == 0) {
        leave_window_if_done(&w);
        if (w.wend < 0) {
            if (n > 0)
                break; /* these rows first: the next window's may be kept ones */
            c->off = w.off;
            c->wend = w.wend;
            int found = next_window(m, c);
            if (found <= 0) {
                r = found < 0 ? found : 1;
                break;
            }
            if (c->in_kept && kept_row(c))
                return 0;
            if (c->in_kept) { /* nothing kept of it: over */
                c->in_kept = 0;
                w.tsc = c->kept_last;
                c->off = c->wend;
            }
            w.off = c->off;
            w.wend = c->wend;
            continue;
        }
        Row row = {0, 0, 0, 0, 0, 0, 0}; /* set by record() when it returns REC_ROW */
        int got = record(&w, &row);
        if (got == REC_NONE)
            continue;
        if (got == REC_MORE) {
            r = 1; /* the last window, cut by the end of the file */
            break;
        }
        int32_t v = got < 0 || row.kind > K_CONTINUE || w.stats[S_BAD]
                        ? -1
                        : table_find(&m->table, row.key);
        if (v < 0) {
            r = M_CHANGED;
            break;
        }
        int continues = row.kind == K_CONTINUE;
        if (continues && row.off != m->first_off[v])
            continue; /* not the vCPU's first record: says nothing */
        if (m->keep != NULL && !m->keep[v])
            continue; /* another merge's row */
        c->rows[n++] =
            (MergeRow){row.tsc, row_key(row.off, row_fields(continues, v, row.old, row.new))};
    }
    c->off = w.off;
    c->wend = w.wend;
    c->tsc = w.tsc;
    c->next = c->rows;
    c->end = c->rows + n;
    return r < 0 ? r : 0;
}

/* ---- the loser tree ------------------------------------------------------ */

/* cursor `leaf` with the key of its next row */
static inline Node player(const Merge *m, int32_t leaf)
{
    if (leaf >= m->n_cursors)
        return (Node){DONE_KEY, DONE_KEY, leaf};
    const Cursor *c = &m->cursors[leaf];
    if (c->in_kept)
        return (Node){c->kept_time, row_key(c->kept_header, c->kept->fields), leaf};
    if (c->next >= c->end)
        return (Node){DONE_KEY, DONE_KEY, leaf};
    return (Node){c->next->time, c->next->key, leaf};
}

/* (TSC, offset) order */
static inline int plays_before(const Node *a, const Node *b)
{
    return a->time < b->time || (a->time == b->time && a->key < b->key);
}

/* Cursor `p.leaf`'s next row changed to p's key: play it up to the root and
 * return the new winner.  Which pcpu comes next is data, so each match is
 * computed with masks (GCC turns the same selection written with ?: into
 * branches, mispredicted about every other row); the stored losers hold
 * their keys, so their loads wait for nothing. */
static inline Node replay(Merge *m, Node p)
{
    Node *tree = m->tree;
    for (int node = (p.leaf + m->n_leaves) >> 1; node > 0; node >>= 1) {
        Node s = tree[node];
        /* all ones if the stored loser comes first: it goes on, p stays */
        int64_t swap = -(int64_t)((s.time < p.time) | ((s.time == p.time) & (s.key < p.key)));
        int64_t dt = (s.time ^ p.time) & swap, dkey = (s.key ^ p.key) & swap;
        int32_t dl = (s.leaf ^ p.leaf) & (int32_t)swap;
        tree[node] = (Node){s.time ^ dt, s.key ^ dkey, s.leaf ^ dl};
        p = (Node){p.time ^ dt, p.key ^ dkey, p.leaf ^ dl};
    }
    tree[0] = p;
    return p;
}

/* the winner of the subtree at `node` (leaves: node >= n_leaves), storing losers */
static Node build(Merge *m, int node)
{
    if (node >= m->n_leaves)
        return player(m, node - m->n_leaves);
    Node a = build(m, 2 * node), b = build(m, 2 * node + 1);
    int a_wins = !plays_before(&b, &a);
    m->tree[node] = a_wins ? b : a;
    return a_wins ? a : b;
}

/* give every cursor its first rows and build the tree: 0, or an M_ outcome */
static int merge_start(Merge *m)
{
    if (m->len >= MAX_MERGE_BYTES)
        return M_CHANGED; /* offsets would not fit a row's key (scan_core.h sends such files
                           * to the generic path) */
    for (int i = 0; i < m->n_cursors; i++) {
        int r = refill(m, &m->cursors[i]);
        if (r < 0)
            return r;
    }
    m->tree[0] = build(m, 1);
    m->started = 1;
    return 0;
}

typedef struct {
    int64_t *time;
    int32_t *member;
    int8_t *old, *new;
    int64_t *off; /* the rows' byte offsets, if wanted (NULL: not) */
    int64_t n;    /* rows written */
} Columns;

/* the lowest byte offset a cursor still has to read */
static int64_t low_water(const Merge *m)
{
    int64_t low = m->headers;
    for (int i = 0; i < m->n_cursors; i++) {
        const Cursor *c = &m->cursors[i];
        if ((c->in_kept || c->next < c->end) && c->off < low)
            low = c->off;
    }
    return low;
}

/* Up to `cap` rows in (TSC, offset) order, each handed to take(ctx, TSC,
 * key), which returns 0 to go on or an M_ outcome to stop: rows taken (0:
 * the end), or an M_ outcome.  Always inlined, so that `take` is too. */
static inline __attribute__((always_inline)) int64_t
merge_each(Merge *m, int64_t cap, int (*take)(void *, int64_t, int64_t), void *ctx)
{
    if (!m->started) {
        int r = merge_start(m);
        if (r < 0)
            return r;
    }
    int64_t n = 0;
    Node w = m->tree[0];
    while (n < cap && w.key != DONE_KEY) {
        int r = take(ctx, w.time, w.key);
        if (r < 0)
            return r;
        n++;
        Cursor *c = &m->cursors[w.leaf];
        if (c->in_kept) {
            c->kept++;
            if (!kept_row(c) && (r = refill(m, c)) < 0)
                return r;
        } else if (++c->next == c->end && (r = refill(m, c)) < 0) {
            return r;
        }
        w = replay(m, player(m, w.leaf));
    }
    if (m->release)
        release_mapped(m->buf, m->len, &m->released, low_water(m));
    return n;
}

static inline __attribute__((always_inline)) int put_column_row(void *ctx, int64_t time,
                                                                 int64_t key)
{
    Columns *out = ctx;
    int64_t n = out->n++;
    out->time[n] = time;
    if (out->off != NULL)
        out->off[n] = key_off(key);
    out->member[n] = key_vcpu(key); /* the table numbers members: keys come in their order */
    out->old[n] = (int8_t)key_old(key);
    out->new[n] = (int8_t)key_new(key);
    return 0;
}

/* Up to `cap` rows in (TSC, offset) order into `out`: rows written (0: the
 * end), or an M_ outcome. */
static inline int64_t merge_rows(Merge *m, Columns *out, int64_t cap)
{
    out->n = 0;
    return merge_each(m, cap, put_column_row, out);
}

/* the Merge for these pcpus and vCPU keys: 0, M_NOMEM, or M_CHANGED for
 * impossible arguments */
static int merge_init(Merge *m, const int32_t *pcpus, Py_ssize_t n_pcpus, const int64_t *keys,
                      const int64_t *first_off, Py_ssize_t n_keys)
{
    memset(m, 0, sizeof *m);
    if (n_pcpus > MAX_PCPUS || n_keys > MAX_KEPT_VCPUS)
        return M_CHANGED;
    for (int p = 0; p < MAX_PCPUS; p++)
        m->slot[p] = -1;
    m->n_cursors = (int)n_pcpus;
    m->n_leaves = 1;
    while (m->n_leaves < m->n_cursors)
        m->n_leaves *= 2;
    m->free_pending = -1;
    m->cursors = calloc((size_t)n_pcpus + 1, sizeof *m->cursors);
    m->tree = calloc((size_t)m->n_leaves, sizeof *m->tree);
    m->first_off = malloc(((size_t)n_keys + 1) * sizeof *m->first_off);
    if (m->cursors == NULL || m->tree == NULL || m->first_off == NULL ||
        table_init(&m->table, n_keys) < 0)
        return M_NOMEM;
    memcpy(m->first_off, first_off, (size_t)n_keys * sizeof *first_off);
    for (Py_ssize_t i = 0; i < n_keys; i++) {
        if (keys[i] < 0 || keys[i] > 0xffffffffLL || table_find(&m->table, keys[i]) >= 0)
            return M_CHANGED; /* not a vCPU key, or one given twice */
        if (table_add(&m->table, keys[i]) < 0)
            return M_NOMEM;
    }
    for (Py_ssize_t i = 0; i < n_pcpus; i++) {
        if (pcpus[i] < 0 || pcpus[i] >= MAX_PCPUS || m->slot[pcpus[i]] >= 0)
            return M_CHANGED;
        m->slot[pcpus[i]] = (int32_t)i;
        Cursor *c = &m->cursors[i];
        c->wend = c->tsc = -1;
        c->pcpu = pcpus[i];
        c->head = c->tail = -1;
    }
    return 0;
}

#endif
