/*
 * xenalyze's domain runstates (docs/xentrace.md, "xenalyze-compatible mode"), in C.
 *
 * Why C: the emulation is a per-record state machine over a merge of the
 * per-pcpu streams; in Python it ran at ~60k records/s.  Here one call walks
 * the whole mapped file the way xenalyze reads it and returns the per-domain
 * figures, with memory independent of the file's size:
 *
 *  - per-pcpu cursors walk the file lazily, each decoding only its own
 *    windows and skipping the others' headers, with xenalyze's pcpu
 *    discovery order: the leading run of new pcpus at offset 0, the highest
 *    active pcpu peeking at the window after its own, and any cursor passing
 *    a never-seen pcpu's window; like xenalyze, a cursor processes the window
 *    headers it meets one at a time in the merge (a header keeps the order
 *    key of its pcpu's last record; 0 for a pcpu just found);
 *  - the next record is the smallest order TSC among active cursors; ties go
 *    to the most recently pushed cursor; a lost record is processed
 *    twice, LOST_START at its first_tsc and LOST_END at its TSC;
 *  - xenalyze's vCPU / pcpu / domain model, domain classification from per-state
 *    vCPU counts (order-independent, O(1));
 *  - per domain state: exact cycles (128-bit) and count, and a log-linear
 *    histogram of the interval lengths for the self-weighted percentiles
 *    (see HISTOGRAM below);
 *  - with `release`, mapped pages behind the slowest cursor are dropped from
 *    the resident set (madvise MADV_DONTNEED; the file stays mapped).
 *
 * Record decoding follows sources/xentrace/_walk.c exactly (the caller runs
 * that walker over the file first, so in strict mode nothing here can be
 * malformed; in lenient mode bad records are skipped the same way).
 *
 * HISTOGRAM: an interval of length v (cycles, > 0) goes to bucket
 *   v < 64:  block 0, slot v;
 *   else:    e = floor(log2 v), block e - 5, slot (v >> (e - 6)) & 63,
 * so lengths below 128 have their own bucket and a bucket never spans more
 * than 1/64 of its lower bound.  Each bucket keeps the sum of its lengths and
 * the largest length.  The p-th self-weighted percentile is the largest
 * length in the first bucket at which the cumulative sum of lengths reaches
 * p% of the state's cycles (exact integer arithmetic): it is an interval that
 * really occurred, at least the exact self-weighted percentile and less than
 * 1/64 above it.  Blocks are allocated on first use (1.5 KiB each).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "../kernel_abi.h"
#include "../sources/xentrace/xentrace_format.h"
#define IDLE_DOMAIN 32767
#define HOLDER_DOMAIN 32768

typedef unsigned __int128 u128;

/* vCPU states (xenalyze's numbering of the public ones plus internal ones) */
enum { RUNNING, RUNNABLE, BLOCKED, OFFLINE, LOST, INIT, QUEUED, N_VSTATES };
/* domain states, in LABELS order (analysis/xenalyze.py) */
enum { D_BLOCKED, D_PARTIAL_RUN, D_FULL_RUN, D_PARTIAL_CONT, D_HAZARD, D_FULL_CONT, D_LOST,
       N_DSTATES };
static const int BY_MASK[8] = {-1, D_FULL_RUN, D_FULL_CONT, D_HAZARD, D_BLOCKED, D_PARTIAL_RUN,
                               D_PARTIAL_CONT, D_HAZARD};
/* row kinds */
enum { K_CHANGE, K_CONTINUE, K_LOST, K_WRAP, K_OTHER, K_HEADER };
/* fatal errors (formatted in xenalyze.py) */
enum { F_NONE, F_START_BUSY, F_NEXT_BUSY, F_NOMEM };

#define N_BLOCKS 59
#define N_SLOTS 64

typedef struct {
    u128 weight;
    uint64_t max;
} Bucket;

typedef struct {
    u128 cycles;
    int64_t count;
    Bucket *blocks[N_BLOCKS];
} Stat;

typedef struct {
    int dom;
    int state; /* domain state, -1: none */
    int64_t last;
    int64_t n[N_VSTATES]; /* vCPUs per vCPU state */
    Stat stat[N_DSTATES];
} Domain;

typedef struct {
    int dom, vid, state;
    int domain; /* index into domains; -1 for pcpu placeholders */
} Vcpu;

typedef struct {
    /* window and decoding position */
    int64_t win, wend, pos, ltsc;
    /* current row */
    int64_t tsc, aux, off;
    int kind, dom, vid, old, new;
    int phase, active;
    int64_t last_key; /* order key of the last processed record (0 before any) */
    /* model */
    int exists, inferred, has_first;
    int64_t current; /* vcpu index, CUR_NONE or CUR_HOLDER */
    int64_t first_tsc, last_tsc;
    Vcpu holder;
} Pcpu;

#define CUR_NONE (-1)
#define CUR_HOLDER (-2)

typedef struct {
    int64_t key, seq;
    int pid;
} Entry;

typedef struct {
    const uint8_t *buf;
    int64_t len;
    int release;
    int64_t released, page;
    Pcpu *pcpus; /* MAX_PCPUS */
    uint8_t *seen;
    int active_max;
    Entry *heap;
    int64_t nheap, seq;
    Vcpu *vcpus;
    int64_t nvcpus, capvcpus;
    uint64_t *hkeys; /* open addressing: (dom << 16 | vid) + 1, 0 = empty (no id wraps to it) */
    int64_t *hvals;
    int64_t hcap;
    Domain **domains;
    int64_t ndomains, capdomains;
    int32_t *dom_index; /* 65536 entries, -1 = none */
    int lost_pcpus;
    int64_t first, last, processed;
    int has_first;
    /* fatal error */
    int err;
    int64_t err_off;
    int err_dom, err_vid, err_pcpu, err_cdom, err_cvid;
} R;

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return (int64_t)v;
}

/* ---- windows -------------------------------------------------------------- */

static int header_ok(const R *r, int64_t q)
{
    const uint8_t *p = r->buf + q;
    int32_t pcpu = (int32_t)rd32(p + 4);
    uint32_t size = rd32(p + 8);
    return rd32(p) == CPU_CHANGE_HEADER && pcpu >= 0 && pcpu < MAX_PCPUS && size % 4 == 0 &&
           (int64_t)size <= MAX_WINDOW;
}

/* offset of the first plausible window header at or after q, or -1 */
static int64_t next_header(const R *r, int64_t q)
{
    while (r->len - q >= 12) {
        if (header_ok(r, q))
            return q;
        q += 4;
    }
    return -1;
}

static inline int pid_at(const R *r, int64_t h) { return (int)rd32(r->buf + h + 4); }
static inline int64_t wend_at(const R *r, int64_t h) { return h + 12 + (int64_t)rd32(r->buf + h + 8); }

/* decode the cursor's next row inside its window; 0 when the window has no more */
static int next_row(const R *r, Pcpu *c)
{
    for (;;) {
        int64_t off = c->pos;
        if (off >= c->wend || r->len - off < 4)
            return 0;
        const uint8_t *p = r->buf + off;
        uint32_t hdr = rd32(p);
        int has_tsc = (int)(hdr >> 31);
        int n_extra = (int)((hdr >> 28) & 7);
        int64_t size = 4 + 8 * has_tsc + 4 * n_extra;
        if (off + size > c->wend) { /* bad record: skip the rest of the window */
            c->pos = c->wend;
            continue;
        }
        if (r->len - off < size)
            return 0; /* truncated file */
        uint32_t event = hdr & EVENT_MASK;
        uint32_t cls = (event >> 16) & 0xfff;
        int64_t tsc = c->ltsc;
        const uint8_t *x = p + 4 + 8 * has_tsc;
        c->pos = off + size;
        if (cls == 0 || (cls & (cls - 1)) != 0)
            continue;
        if (has_tsc) {
            tsc = rd64(p + 4);
            if (c->ltsc >= 0 && tsc < c->ltsc)
                tsc = c->ltsc;
            c->ltsc = tsc;
        }
        c->off = off;
        c->tsc = tsc;
        c->aux = 0;
        if ((event & RUNSTATE_MASK) == RUNSTATE_CHANGE || event == CONTINUE_RUNNING) {
            int old = 0, new = 0, kind = K_CONTINUE;
            if (event != CONTINUE_RUNNING) {
                old = (int)((event >> 8) & 0xf);
                new = (int)((event >> 4) & 0xf);
                kind = K_CHANGE;
            }
            if (n_extra < 1 || old > 3 || new > 3 || tsc < 0)
                continue;
            uint32_t ids = rd32(x);
            c->kind = kind;
            c->dom = (int)(ids >> 16);
            c->vid = (int)(ids & 0xffff);
            c->old = old;
            c->new = new;
            return 1;
        }
        if (event == LOST_RECORDS) {
            if (n_extra != 4 || !has_tsc)
                continue;
            uint32_t ids = rd32(x + 4); /* domain in the low half, vcpu in the high half */
            int64_t first = (int64_t)((uint64_t)rd32(x + 8) | (uint64_t)rd32(x + 12) << 32);
            if (tsc <= first)
                continue;
            c->kind = K_LOST;
            c->dom = (int)(ids & 0xffff);
            c->vid = (int)(ids >> 16);
            c->aux = first;
            return 1;
        }
        if (event == WRAP_BUFFER) {
            if (!has_tsc)
                continue;
            c->kind = K_WRAP;
            return 1;
        }
        if (tsc >= 0) {
            c->kind = K_OTHER;
            return 1;
        }
    }
}

/* ---- merge (docs/xentrace.md, "How xenalyze reads the file") ----------------- */

static inline int before(const Entry *a, const Entry *b)
{
    return a->key < b->key || (a->key == b->key && a->seq > b->seq);
}

/* a window header has no TSC: it keeps the key of the pcpu's last record */
static inline int64_t order_key(const Pcpu *c)
{
    if (c->kind == K_HEADER)
        return c->last_key;
    return c->kind == K_LOST && c->phase == 0 ? c->aux : c->tsc;
}

static void push(R *r, int pid)
{
    Entry e = {order_key(&r->pcpus[pid]), ++r->seq, pid};
    int64_t i = r->nheap++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!before(&e, &r->heap[parent]))
            break;
        r->heap[i] = r->heap[parent];
        i = parent;
    }
    r->heap[i] = e;
}

static int pop(R *r)
{
    while (r->nheap > 0) {
        Entry top = r->heap[0];
        Entry last = r->heap[--r->nheap];
        int64_t i = 0, n = r->nheap;
        for (;;) {
            int64_t a = 2 * i + 1, b = a + 1, m = i;
            const Entry *best = &last;
            if (a < n && before(&r->heap[a], best)) {
                m = a;
                best = &r->heap[a];
            }
            if (b < n && before(&r->heap[b], best))
                m = b;
            if (m == i)
                break;
            r->heap[i] = r->heap[m];
            i = m;
        }
        if (n > 0)
            r->heap[i] = last;
        if (r->pcpus[top.pid].active)
            return top.pid;
    }
    return -1;
}

static void drop_window(R *r, const Pcpu *c);

/* a pcpu is found: its cursor starts at the window header at h, which it
 * processes like a record with order key 0, so before anything else */
static void activate(R *r, int pid, int64_t h)
{
    Pcpu *c = &r->pcpus[pid];
    r->seen[pid] = 1;
    c->active = 1;
    c->win = h;
    c->wend = wend_at(r, h);
    c->pos = h;
    c->ltsc = -1;
    c->phase = 0;
    c->kind = K_HEADER;
    c->last_key = 0;
    if (pid > r->active_max)
        r->active_max = pid;
    push(r, pid);
}

/* move the cursor to the next window header; 0 at end of file (deactivated) */
static int next_window(R *r, int pid)
{
    Pcpu *c = &r->pcpus[pid];
    int64_t h = next_header(r, c->wend);
    if (h < 0) {
        c->active = 0;
        /* the highest pcpu still active takes over the peeking */
        if (pid == r->active_max) {
            int m = -1;
            for (int q = 0; q < pid; q++)
                if (r->pcpus[q].active)
                    m = q;
            r->active_max = m;
        }
        return 0;
    }
    c->win = h;
    c->wend = wend_at(r, h);
    c->pos = h;
    c->kind = K_HEADER;
    push(r, pid);
    return 1;
}

/* process the window header the cursor is at, as xenalyze does: one header
 * at a time, in merge order, so that a pcpu activated on the way processes
 * its header and its records older than this cursor's key before this
 * cursor passes the next window; 0 when the pcpu's data ended */
static int header(R *r, int pid)
{
    Pcpu *c = &r->pcpus[pid];
    int owner = pid_at(r, c->win);
    if (owner == pid) {
        /* the highest active pcpu peeks at the window after its own */
        if (pid == r->active_max) {
            int64_t h = next_header(r, c->wend);
            if (h >= 0 && !r->seen[pid_at(r, h)])
                activate(r, pid_at(r, h), h);
        }
        c->pos = c->win + 12;
        if (next_row(r, c)) {
            push(r, pid);
            return 1;
        }
        drop_window(r, c);
    } else if (!r->seen[owner]) {
        activate(r, owner, c->win);
    }
    return next_window(r, pid);
}

/* after processing a row: next row (or phase); 0 when the pcpu's data ended */
static int advance(R *r, int pid)
{
    Pcpu *c = &r->pcpus[pid];
    c->last_key = order_key(c);
    if (c->kind == K_LOST && c->phase == 0) {
        c->phase = 1;
    } else {
        c->phase = 0;
        if (!next_row(r, c)) {
            drop_window(r, c);
            return next_window(r, pid);
        }
    }
    push(r, pid);
    return 1;
}

static void drop(R *r, int64_t from, int64_t to)
{
#ifdef MADV_DONTNEED
    madvise((void *)(r->buf + from), (size_t)(to - from), MADV_DONTNEED);
#endif
}

/* a cursor leaves its window: nobody reads the window's inside again (other
 * cursors only read its header), so its whole pages can leave the resident
 * set even when the cursors are far apart in the file */
static void drop_window(R *r, const Pcpu *c)
{
    if (!r->release)
        return;
    int64_t from = c->win + 12 + r->page - 1;
    from -= from % r->page;
    int64_t to = c->wend < r->len ? c->wend : r->len;
    to -= to % r->page;
    if (to > from && to > r->released)
        drop(r, from > r->released ? from : r->released, to);
}

/* drop mapped pages no cursor will read again */
static void release_pages(R *r)
{
    int64_t low = r->len;
    for (int pid = 0; pid <= r->active_max; pid++)
        if (r->pcpus[pid].active && r->pcpus[pid].pos < low)
            low = r->pcpus[pid].pos;
    int64_t end = low - low % r->page;
    if (end > r->released) {
        drop(r, r->released, end);
        r->released = end;
    }
}

/* ---- model (docs/xentrace.md, "xenalyze's vCPU model") ---------------------- */

static int add_interval(Stat *s, uint64_t v)
{
    s->cycles += v;
    s->count += 1;
    int block, slot;
    if (v < 64) {
        block = 0;
        slot = (int)v;
    } else {
        int e = 63 - __builtin_clzll(v);
        block = e - 5;
        slot = (int)((v >> (e - 6)) & 63);
    }
    if (!s->blocks[block]) {
        s->blocks[block] = calloc(N_SLOTS, sizeof(Bucket));
        if (!s->blocks[block])
            return -1;
    }
    Bucket *b = &s->blocks[block][slot];
    b->weight += v;
    if (v > b->max)
        b->max = v;
    return 0;
}

static int classify(const Domain *d)
{
    int64_t total = 0;
    for (int i = 0; i < N_VSTATES; i++)
        total += d->n[i];
    int64_t visible = total - d->n[INIT];
    if (visible == 0)
        return -1;
    if (d->n[LOST] == visible)
        return D_LOST;
    int mask = (d->n[RUNNING] > 0) | (d->n[RUNNABLE] > 0) << 1 |
               (d->n[BLOCKED] + d->n[OFFLINE] > 0) << 2;
    return BY_MASK[mask];
}

static void update(R *r, Domain *d, int64_t tsc)
{
    if (d->last != 0 && d->last < tsc && d->state >= 0) {
        if (add_interval(&d->stat[d->state], (uint64_t)tsc - (uint64_t)d->last) < 0)
            r->err = F_NOMEM;
    }
    d->state = classify(d);
    d->last = tsc;
}

static void set_state(R *r, Vcpu *v, int state, int64_t tsc)
{
    if (v->domain < 0) {
        v->state = state;
        return;
    }
    Domain *d = r->domains[v->domain];
    d->n[v->state]--;
    d->n[state]++;
    v->state = state;
    update(r, d, tsc);
}

static Vcpu *cur_vcpu(R *r, Pcpu *p)
{
    if (p->current == CUR_NONE)
        return NULL;
    if (p->current == CUR_HOLDER)
        return &p->holder;
    return &r->vcpus[p->current];
}

static int64_t vcpu_index(R *r, int dom, int vid)
{
    uint64_t key = ((uint64_t)(uint32_t)dom << 16 | (uint64_t)(uint32_t)vid) + 1;
    if (2 * (r->nvcpus + 1) > r->hcap) {
        int64_t ncap = r->hcap ? 2 * r->hcap : 1024;
        uint64_t *nk = calloc((size_t)ncap, sizeof *nk);
        int64_t *nv = malloc((size_t)ncap * sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return -1;
        }
        for (int64_t i = 0; i < r->hcap; i++) {
            if (!r->hkeys[i])
                continue;
            uint64_t h = r->hkeys[i] * 0x9e3779b97f4a7c15ull;
            int64_t j = (int64_t)(h >> 20) & (ncap - 1);
            while (nk[j])
                j = (j + 1) & (ncap - 1);
            nk[j] = r->hkeys[i];
            nv[j] = r->hvals[i];
        }
        free(r->hkeys);
        free(r->hvals);
        r->hkeys = nk;
        r->hvals = nv;
        r->hcap = ncap;
    }
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    int64_t j = (int64_t)(h >> 20) & (r->hcap - 1);
    while (r->hkeys[j]) {
        if (r->hkeys[j] == key)
            return r->hvals[j];
        j = (j + 1) & (r->hcap - 1);
    }
    /* new vCPU, in init; its domain is created with it */
    int32_t di = r->dom_index[dom];
    if (di < 0) {
        if (r->ndomains == r->capdomains) {
            int64_t ncap = r->capdomains ? 2 * r->capdomains : 16;
            Domain **nd = realloc(r->domains, (size_t)ncap * sizeof *nd);
            if (!nd)
                return -1;
            r->domains = nd;
            r->capdomains = ncap;
        }
        Domain *d = calloc(1, sizeof *d);
        if (!d)
            return -1;
        d->dom = dom;
        d->state = -1;
        di = (int32_t)r->ndomains;
        r->domains[r->ndomains++] = d;
        r->dom_index[dom] = di;
    }
    if (r->nvcpus == r->capvcpus) {
        int64_t ncap = r->capvcpus ? 2 * r->capvcpus : 64;
        Vcpu *nv = realloc(r->vcpus, (size_t)ncap * sizeof *nv);
        if (!nv)
            return -1;
        r->vcpus = nv;
        r->capvcpus = ncap;
    }
    int64_t vi = r->nvcpus++;
    r->vcpus[vi] = (Vcpu){dom, vid, INIT, di};
    r->domains[di]->n[INIT]++;
    r->hkeys[j] = key;
    r->hvals[j] = vi;
    return vi;
}

static void fatal(R *r, int code, Pcpu *p, int pid, const Vcpu *v, int64_t off)
{
    Vcpu *cur = cur_vcpu(r, p);
    r->err = code;
    r->err_off = off;
    r->err_dom = v->dom;
    r->err_vid = v->vid;
    r->err_pcpu = pid;
    r->err_cdom = cur ? cur->dom : -1;
    r->err_cvid = cur ? cur->vid : -1;
}

static void next(R *r, Pcpu *p, int pid, int64_t vi, int64_t tsc, int64_t off)
{
    Vcpu *v = &r->vcpus[vi];
    if (p->current != CUR_NONE && p->current != vi) {
        if (!p->inferred) {
            fatal(r, F_NEXT_BUSY, p, pid, v, off);
            return;
        }
        set_state(r, cur_vcpu(r, p), LOST, tsc);
    }
    p->current = vi;
    p->inferred = 0;
    set_state(r, v, RUNNING, tsc);
}

static void runstate(R *r, Pcpu *p, int pid, int64_t vi, int old, int new, int cont,
                     int64_t tsc, int64_t off)
{
    Vcpu *v = &r->vcpus[vi];
    if (v->state == INIT) { /* rule 1: only a move into running makes it visible */
        if (old == RUNNING) {
            if (p->current != CUR_HOLDER) {
                fatal(r, F_START_BUSY, p, pid, v, off);
                return;
            }
            p->holder.state = QUEUED;
            p->current = CUR_NONE;
        }
        if (new != RUNNING)
            return;
        int64_t start = tsc;
        if (old == RUNNING && p->has_first)
            start = p->first_tsc;
        set_state(r, v, RUNNING, start);
        p->current = vi;
        p->inferred = 0;
        return;
    }
    if (v->state == LOST) {
        if (new != RUNNING)
            return;
        if (cont) {
            if (p->current != CUR_NONE && p->current != vi)
                set_state(r, cur_vcpu(r, p), LOST, tsc);
            p->current = CUR_NONE;
            next(r, p, pid, vi, tsc, off);
            if (r->err)
                return;
            set_state(r, v, RUNNING, tsc);
            return;
        }
        next(r, p, pid, vi, tsc, off);
        return;
    }
    if (v->state != old && v->state == RUNNING)
        return; /* skew suspected: xenalyze ignores the record */
    if (cont) {
        set_state(r, v, RUNNING, tsc);
        return;
    }
    if (old == RUNNING || v->state == RUNNING) {
        if (old == RUNNING) {
            if (p->current == vi)
                p->current = CUR_NONE;
            int state = r->lost_pcpus > 0 && v->dom != IDLE_DOMAIN ? LOST : new;
            set_state(r, v, state, tsc);
        }
        if (new == RUNNING)
            next(r, p, pid, vi, tsc, off);
        return;
    }
    if (new == RUNNING) {
        next(r, p, pid, vi, tsc, off);
        return;
    }
    set_state(r, v, new, tsc);
}

static void lost_start(R *r, Pcpu *p, int64_t tsc)
{
    Vcpu *cur = cur_vcpu(r, p);
    if (cur) {
        set_state(r, cur, LOST, tsc);
        p->current = CUR_NONE;
    }
    /* order does not matter: per domain only the first update at tsc charges */
    for (int64_t i = 0; i < r->nvcpus; i++)
        if (r->vcpus[i].state != RUNNING)
            set_state(r, &r->vcpus[i], LOST, tsc);
    r->lost_pcpus++;
}

/* the end of a pcpu's data: its current vCPU becomes lost at its last TSC */
static void end_of_pcpu(R *r, Pcpu *p)
{
    Vcpu *cur = cur_vcpu(r, p);
    if (cur) {
        set_state(r, cur, LOST, p->last_tsc);
        p->current = CUR_NONE;
    }
}

static void replay(R *r)
{
    int64_t h = next_header(r, 0);
    while (h >= 0) {
        int pid = pid_at(r, h);
        if (r->seen[pid])
            break;
        activate(r, pid, h);
        h = next_header(r, wend_at(r, h));
    }
    for (;;) {
        int pid = pop(r);
        if (pid < 0)
            return;
        Pcpu *p = &r->pcpus[pid];
        if (p->kind == K_HEADER) {
            if (!header(r, pid) && p->exists)
                end_of_pcpu(r, p);
            if (r->err)
                return;
            continue;
        }
        int64_t order = order_key(p);
        if (!r->has_first) {
            r->first = order;
            r->has_first = 1;
        }
        r->last = order;
        if (!p->exists) {
            p->exists = 1;
            p->holder = (Vcpu){HOLDER_DOMAIN, pid, RUNNING, -1};
            p->current = CUR_HOLDER;
        }
        if (!p->has_first) {
            p->first_tsc = order;
            p->has_first = 1;
        }
        int kind = p->kind;
        /* a lost record's payload vCPU is only looked up (created) at LOST_END */
        if (kind == K_LOST && p->phase == 0) {
            lost_start(r, p, order);
        } else if (kind == K_CHANGE || kind == K_CONTINUE || kind == K_LOST) {
            int64_t vi = vcpu_index(r, p->dom, p->vid);
            if (vi < 0) {
                r->err = F_NOMEM;
                return;
            }
            if (kind != K_LOST) {
                runstate(r, p, pid, vi, p->old, p->new, kind == K_CONTINUE, order, p->off);
            } else {
                set_state(r, &r->vcpus[vi], RUNNING, order);
                p->current = vi;
                p->inferred = 1;
                r->lost_pcpus--;
            }
            if (r->err)
                return;
        }
        p->last_tsc = order;
        if (!advance(r, pid))
            end_of_pcpu(r, p);
        if (r->err)
            return;
        if (r->release && (++r->processed & 0xffff) == 0)
            release_pages(r);
    }
}

/* ---- results ------------------------------------------------------------------ */

static PyObject *u128_to_py(u128 v)
{
    PyObject *hi = PyLong_FromUnsignedLongLong((unsigned long long)(v >> 64));
    PyObject *lo = PyLong_FromUnsignedLongLong((unsigned long long)v);
    PyObject *sh = PyLong_FromLong(64);
    PyObject *out = NULL, *t = NULL;
    if (hi && lo && sh && (t = PyNumber_Lshift(hi, sh)))
        out = PyNumber_Or(t, lo);
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(sh);
    Py_XDECREF(t);
    return out;
}

static unsigned long long percentile(const Stat *s, int pct)
{
    u128 cum = 0, target = s->cycles * (u128)pct;
    for (int b = 0; b < N_BLOCKS; b++) {
        if (!s->blocks[b])
            continue;
        for (int i = 0; i < N_SLOTS; i++) {
            const Bucket *k = &s->blocks[b][i];
            if (!k->max)
                continue;
            cum += k->weight;
            if (cum * 100 >= target)
                return k->max;
        }
    }
    return 0;
}

static int by_dom(const void *a, const void *b)
{
    int x = (*(Domain *const *)a)->dom, y = (*(Domain *const *)b)->dom;
    return (x > y) - (x < y);
}

static PyObject *results(R *r)
{
    qsort(r->domains, (size_t)r->ndomains, sizeof *r->domains, by_dom);
    PyObject *doms = PyList_New(0);
    if (!doms)
        return NULL;
    for (int64_t i = 0; i < r->ndomains; i++) {
        Domain *d = r->domains[i];
        PyObject *states = PyList_New(0);
        if (!states)
            goto fail;
        for (int s = 0; s < N_DSTATES; s++) {
            Stat *st = &d->stat[s];
            if (st->count == 0)
                continue;
            PyObject *cyc = u128_to_py(st->cycles);
            PyObject *t = cyc ? Py_BuildValue("(iNLKKK)", s, cyc, (long long)st->count,
                                              percentile(st, 5), percentile(st, 50),
                                              percentile(st, 95))
                              : NULL;
            if (!t || PyList_Append(states, t) < 0) {
                Py_XDECREF(t);
                Py_DECREF(states);
                goto fail;
            }
            Py_DECREF(t);
        }
        PyObject *t = Py_BuildValue("(iN)", d->dom, states);
        if (!t || PyList_Append(doms, t) < 0) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_DECREF(t);
    }
    PyObject *first = r->has_first ? PyLong_FromLongLong(r->first) : (Py_INCREF(Py_None), Py_None);
    PyObject *last = r->has_first ? PyLong_FromLongLong(r->last) : (Py_INCREF(Py_None), Py_None);
    return Py_BuildValue("(iNNN)", F_NONE, first, last, doms);
fail:
    Py_DECREF(doms);
    return NULL;
}

static void free_all(R *r)
{
    for (int64_t i = 0; i < r->ndomains; i++) {
        for (int s = 0; s < N_DSTATES; s++)
            for (int b = 0; b < N_BLOCKS; b++)
                free(r->domains[i]->stat[s].blocks[b]);
        free(r->domains[i]);
    }
    free(r->domains);
    free(r->vcpus);
    free(r->hkeys);
    free(r->hvals);
    free(r->dom_index);
    free(r->heap);
    free(r->seen);
    free(r->pcpus);
}

/* run(buf, release) -> (0, first, last, [(dom, [(state, cycles, count, p5, p50, p95)])])
 *                    | (code, off, dom, vid, pcpu, cur_dom, cur_vid) on a fatal error */
static PyObject *py_run(PyObject *self, PyObject *args)
{
    PyObject *buf_o;
    int release;
    (void)self;
    if (!PyArg_ParseTuple(args, "Op", &buf_o, &release))
        return NULL;
    Py_buffer bb;
    Py_ssize_t blen;
    const uint8_t *buf = abi_view(&bb, buf_o, "buf", AK_BYTES, 1, 0, &blen);
    if (buf == NULL)
        return NULL;
    R r;
    memset(&r, 0, sizeof r);
    r.buf = buf;
    r.len = blen;
    r.release = release;
    r.page = sysconf(_SC_PAGESIZE);
    if (r.page <= 0)
        r.page = 4096;
    r.active_max = -1;
    r.pcpus = calloc(MAX_PCPUS, sizeof *r.pcpus);
    r.seen = calloc(MAX_PCPUS, 1);
    r.heap = malloc((MAX_PCPUS + 1) * sizeof *r.heap);
    r.dom_index = malloc(65536 * sizeof *r.dom_index);
    PyObject *out = NULL;
    if (!r.pcpus || !r.seen || !r.heap || !r.dom_index) {
        PyErr_NoMemory();
        goto done;
    }
    memset(r.dom_index, 0xff, 65536 * sizeof *r.dom_index);
    Py_BEGIN_ALLOW_THREADS
    replay(&r);
    Py_END_ALLOW_THREADS
    if (r.err == F_NOMEM) {
        PyErr_NoMemory();
    } else if (r.err) {
        out = Py_BuildValue("(iLiiiii)", r.err, (long long)r.err_off, r.err_dom, r.err_vid,
                            r.err_pcpu, r.err_cdom, r.err_cvid);
    } else {
        out = results(&r);
    }
done:
    free_all(&r);
    PyBuffer_Release(&bb);
    return out;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS,
     "run(buf, release) -> xenalyze's domain runstates of a mapped xentrace file"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_xenalyze", "xenalyze domain runstate emulation", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__xenalyze(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL &&
        (ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
         ABI_CONST(mod, MAX_PCPUS) < 0 || ABI_CONST(mod, N_DSTATES) < 0 ||
         ABI_CONST(mod, IDLE_DOMAIN) < 0))
        Py_CLEAR(mod);
    return mod;
}
