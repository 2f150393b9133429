/*
 * Exact mode's fast path for one xentrace file from start to end, on threads
 * of its own: the first pass (scan_core.h), the vCPUs numbered as the reader
 * registers them, and the second pass merged (merge_core.h) and accounted by
 * the engine's rules (engine/kernel_core.h) as it goes.
 *
 * Why: a report of the whole trace needs only the engine's state after the
 * last row.  Accounting each row where it is merged spares writing it into
 * columns, handing those to Python and reading them back; and the job needs
 * neither Python nor numpy, so the report command can start it as soon as it
 * knows the file (prefetch.py): the file is then read on a second core while
 * the analysis modules load.
 *
 * The work is cut into tasks, which the job's thread takes in turn, and so
 * does a caller that waits for the job (a report that has loaded its modules
 * has nothing else to do): the first pass in chunks of the file, each walked
 * apart and joined to the one before at the end; the second in parts of the
 * domains (domain % parts), each merged and accounted apart.  A domain's
 * accounting reads only its own members' rows, in time order, so each part's
 * members and domains end in the state one stream of every row leaves them
 * in; of the globals, the counters add up and the last time is the later one
 * (loss markers would touch every domain, but the files this path reads have
 * none).  The first pass keeps each part's rows apart, so a part merges only
 * its own; where it kept none (a large file), each part decodes every record
 * and drops the other parts' rows before they cost a merge step.
 *
 * Job(buf, flags, release): buf, a mapped xentrace file (`release`: a shared
 *   file mapping, whose pages may be given back behind the walks).
 * job.start(threads, account, parts, keep_rows, chunk_bytes): the work on a
 *   thread of its own: the first pass, then with `account` the second.  With
 *   `threads` > 1 the first pass walks chunks of about `chunk_bytes`; the
 *   second has `parts` parts; it keeps up to `keep_rows` rows for the second
 *   (fastpath.h).
 * job.scanned() -> the first pass's status, once it is over.
 * job.result() -> what the first pass learned: (stats, pcpu_tsc, pcpu_first,
 *   pcpu_rows, summary, firsts), the vCPUs in the order of their first
 *   records.
 * job.account() -> rows accounted once the second pass is over (run now if
 *   start() did not ask for it), or -1: the file did not merge as the first
 *   pass read it.
 * job.export(state) -> True if the engine's arrays (engine.core's 13-tuple)
 *   held the state the job started from, and now hold the accounted one;
 *   False, and untouched, otherwise.
 * job.close(): stop, and let go of the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel_abi.h"
#include "../../engine/kernel_core.h"
#include "../../engine/kernel_state.h"
#include "scan_core.h"
#include "merge_core.h"

/* rows merged and accounted between two looks at the stop flag and the
 * pages behind */
enum { CHUNK = 4096 };
/* the second pass gave up: the job is being closed */
enum { M_STOPPED = -3 };
enum { MAX_PARTS = MAX_KEEPS };

/* ---- the vCPUs as the reader registers them ----------------------------- */

/* members in the order of their first records, domains in the order of
 * their first members */
typedef struct {
    int64_t n, n_domains;
    int64_t *order;     /* member -> its vCPU in the scan's tables */
    int32_t *member_of; /* the scan's vCPU -> its member */
    int64_t *keys;
    /* per vCPU in the scan's order: its key and its first record's offset */
    int64_t *vcpu_keys, *vcpu_first_off;
    int8_t *initial;
    int32_t *mdom;
    int32_t pcpus[MAX_PCPUS]; /* the pcpus with vCPU rows, in increasing order */
    int n_pcpus;
    int64_t start; /* the first vCPU record's TSC: the engine's window start */
} Members;

static void members_free(Members *mb)
{
    free(mb->order);
    free(mb->member_of);
    free(mb->vcpu_keys);
    free(mb->vcpu_first_off);
    free(mb->keys);
    free(mb->initial);
    free(mb->mdom);
    memset(mb, 0, sizeof *mb);
}

/* a vCPU of the scan, as sorted into member order */
typedef struct {
    First first;
    int64_t index;
} Ranked;

static int by_first_record(const void *a, const void *b)
{
    const First *x = &((const Ranked *)a)->first, *y = &((const Ranked *)b)->first;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* number the domains of the members (in member order) by their first member:
 * 0, or -1 out of memory */
static int number_domains(Members *mb)
{
    Table doms;
    if (table_init(&doms, 16) < 0)
        return -1;
    int status = 0;
    for (int64_t m = 0; m < mb->n && status == 0; m++) {
        int64_t dom = mb->keys[m] >> 16;
        int32_t d = table_find(&doms, dom);
        if (d < 0 && (status = table_add(&doms, dom)) == 0)
            d = (int32_t)(doms.n - 1);
        mb->mdom[m] = d;
    }
    mb->n_domains = doms.n;
    table_free(&doms);
    return status;
}

/* the members of a finished scan: 0, or -1 out of memory */
static int members_init(Members *mb, const Scan *s)
{
    int64_t n = s->table.n;
    memset(mb, 0, sizeof *mb);
    mb->n = n;
    size_t count = (size_t)n + 1;
    Ranked *ranked = malloc(count * sizeof *ranked);
    mb->order = malloc(count * sizeof *mb->order);
    mb->member_of = malloc(count * sizeof *mb->member_of);
    mb->vcpu_keys = malloc(count * sizeof *mb->vcpu_keys);
    mb->vcpu_first_off = malloc(count * sizeof *mb->vcpu_first_off);
    mb->keys = malloc(count * sizeof *mb->keys);
    mb->initial = malloc(count);
    mb->mdom = malloc(count * sizeof *mb->mdom);
    if (ranked == NULL || !mb->order || !mb->member_of || !mb->vcpu_keys ||
        !mb->vcpu_first_off || !mb->keys || !mb->initial || !mb->mdom) {
        free(ranked);
        return -1;
    }
    for (int64_t v = 0; v < n; v++) {
        ranked[v] = (Ranked){s->firsts[v], v};
        mb->vcpu_keys[v] = s->firsts[v].key;
        mb->vcpu_first_off[v] = s->firsts[v].off;
    }
    qsort(ranked, (size_t)n, sizeof *ranked, by_first_record);
    for (int64_t m = 0; m < n; m++) {
        mb->order[m] = ranked[m].index;
        mb->member_of[ranked[m].index] = (int32_t)m;
        mb->keys[m] = ranked[m].first.key;
        mb->initial[m] = (int8_t)ranked[m].first.old;
    }
    free(ranked);
    for (int p = 0; p < MAX_PCPUS; p++)
        if (s->pcpu_rows[p] > 0)
            mb->pcpus[mb->n_pcpus++] = p;
    mb->start = s->sum[SUM_FIRST];
    return number_domains(mb);
}

/* ---- engine state of our own ------------------------------------------- */

static void kernel_free(Kernel *k)
{
    free(k->mstate);
    free(k->msince);
    free(k->mns);
    free(k->dcount);
    free(k->dlast);
    free(k->dns);
    free(k->ep_state);
    free(k->ep_len);
    free(k->ep_count);
    free(k->ep_max);
    free(k->ep_hist);
    free(k->g);
    memset(k, 0, sizeof *k);
}

/* Arrays for the members' engine state, as the engine sets them up before
 * any row: window start at the first record, each member in its state
 * before that (engine.core: _begin, then _apply_initial with the first
 * pass's states).  0, or -1 out of memory. */
static int kernel_init(Kernel *k, const Members *mb)
{
    size_t nm = (size_t)mb->n + 1, nd = (size_t)mb->n_domains + 1;
    memset(k, 0, sizeof *k);
    k->mdom = mb->mdom;
    k->n_members = (Py_ssize_t)mb->n;
    k->n_domains = (Py_ssize_t)mb->n_domains;
    k->mstate = malloc(nm);
    k->msince = malloc(nm * sizeof *k->msince);
    k->mns = calloc(nm * N_MBUCKETS, sizeof *k->mns);
    k->dcount = calloc(nd * 4, sizeof *k->dcount);
    k->dlast = malloc(nd * sizeof *k->dlast);
    k->dns = calloc(nd * N_DSTATES, sizeof *k->dns);
    k->ep_state = malloc(nd);
    k->ep_len = calloc(nd, sizeof *k->ep_len);
    k->ep_count = calloc(nd * N_DSTATES, sizeof *k->ep_count);
    k->ep_max = calloc(nd * N_DSTATES, sizeof *k->ep_max);
    k->ep_hist = calloc(nd * N_DSTATES * N_BUCKETS, sizeof *k->ep_hist);
    k->g = calloc(N_GLOBALS, sizeof *k->g);
    if (!k->mstate || !k->msince || !k->mns || !k->dcount || !k->dlast || !k->dns ||
        !k->ep_state || !k->ep_len || !k->ep_count || !k->ep_max || !k->ep_hist || !k->g)
        return -1;
    k->g[G_WINDOW_START] = k->g[G_EPOCH_START] = k->g[G_LAST_TIME] = mb->start;
    for (int64_t d = 0; d < mb->n_domains; d++) {
        k->dlast[d] = mb->start;
        k->ep_state[d] = D_NONE;
    }
    for (int64_t m = 0; m < mb->n; m++) {
        k->mstate[m] = UNSEEN;
        k->msince[m] = mb->start;
        set_member_state(k, m, UNSEEN, mb->initial[m]);
    }
    return 0;
}

/* What every array of state `k` holds, in engine.core's tuple order, and
 * its size in bytes (ep_hist last: it is copied apart). */
typedef struct {
    void *at;
    size_t bytes;
} Span;

enum { N_SPANS = 11 };

static void spans(const Kernel *k, Span out[N_SPANS])
{
    size_t nm = (size_t)k->n_members, nd = (size_t)k->n_domains;
    out[0] = (Span){k->mstate, nm};
    out[1] = (Span){k->msince, nm * sizeof *k->msince};
    out[2] = (Span){k->mns, nm * N_MBUCKETS * sizeof *k->mns};
    out[3] = (Span){k->dcount, nd * 4 * sizeof *k->dcount};
    out[4] = (Span){k->dlast, nd * sizeof *k->dlast};
    out[5] = (Span){k->dns, nd * N_DSTATES * sizeof *k->dns};
    out[6] = (Span){k->ep_state, nd};
    out[7] = (Span){k->ep_len, nd * sizeof *k->ep_len};
    out[8] = (Span){k->ep_count, nd * N_DSTATES * sizeof *k->ep_count};
    out[9] = (Span){k->ep_max, nd * N_DSTATES * sizeof *k->ep_max};
    out[10] = (Span){k->g, N_GLOBALS * sizeof *k->g};
}

/* 1 if `a` and `b` (of as many members and domains) hold the same state */
static int same_state(const Kernel *a, const Kernel *b)
{
    Span sa[N_SPANS], sb[N_SPANS];
    spans(a, sa);
    spans(b, sb);
    for (int i = 0; i < N_SPANS; i++)
        if (memcmp(sa[i].at, sb[i].at, sa[i].bytes) != 0)
            return 0;
    size_t hist = (size_t)a->n_domains * N_DSTATES * N_BUCKETS * sizeof *a->ep_hist;
    return memcmp(a->mdom, b->mdom, (size_t)a->n_members * sizeof *a->mdom) == 0 &&
           memcmp(a->ep_hist, b->ep_hist, hist) == 0;
}

/* state `src` into `dst` (of as many members and domains); of the episode
 * histograms only the buckets in use, so the pages of the others stay
 * unwritten (most of them, see engine.core's _extend) */
static void copy_state(Kernel *dst, const Kernel *src)
{
    Span sd[N_SPANS], ss[N_SPANS];
    spans(dst, sd);
    spans(src, ss);
    for (int i = 0; i < N_SPANS; i++)
        memcpy(sd[i].at, ss[i].at, ss[i].bytes);
    size_t hist = (size_t)src->n_domains * N_DSTATES * N_BUCKETS;
    for (size_t i = 0; i < hist; i++)
        if (src->ep_hist[i] != 0)
            dst->ep_hist[i] = src->ep_hist[i];
}

/* ---- the second pass, in parts ------------------------------------------ */

typedef struct Job Job;

typedef struct {
    Job *job;
    Merge merge;
    Kernel k;
    uint8_t *keep;   /* per vCPU (the scan's numbers): its rows are accounted here */
    uint8_t *seen;   /* per vCPU: a row of it was accounted */
    uint8_t *owns;   /* per domain: accounted here */
    int64_t rows;    /* accounted, or an M_ outcome */
    /* atomic: the lowest byte offset its merge may still read (INT64_MAX
     * before it starts and once it is over) */
    int64_t low;
} Part;

/* how far the job is */
enum { P_NEW, P_SCANNING, P_SCANNED, P_ACCOUNTING, P_DONE };
/* the first pass walks the file in at most this many chunks */
enum { MAX_CHUNKS = MAX_JOINED };

struct Job {
    PyObject_HEAD
    Py_buffer view;
    const uint8_t *buf;
    int64_t len;
    int flags, release, threads;
    int64_t keep_rows, chunk_bytes;
    int stop; /* atomic: give up */
    pthread_t thread;
    int running; /* the thread was started and not yet joined */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int has_lock;
    int busy; /* in a call with the GIL released: the object must not change */
    /* under the lock: how far the job is, and the tasks of the phase (taken
     * in turn by the job's thread and by callers waiting for the phase) */
    int phase;
    int n_tasks, next_task, tasks_done, account_asked;
    int scan_status;        /* SCAN_DONE, SCAN_GENERIC, or -1: out of memory */
    int64_t account_status; /* rows, or an M_ outcome */
    /* the first pass: chunk 0 is `scan`, which the others join at its end */
    Scan scan;
    Scan *chunk[MAX_CHUNKS];
    int64_t chunk_start[MAX_CHUNKS], chunk_end[MAX_CHUNKS];
    int chunk_status[MAX_CHUNKS];
    int n_chunks;
    Members members;
    Part parts[MAX_PARTS];
    int n_parts;
    /* the engine's state before any row (export compares the engine's with
     * it), and after the second pass */
    Kernel start_state, accounted;
    int has_accounted;
};

static void part_free(Part *p)
{
    merge_free(&p->merge);
    kernel_free(&p->k);
    free(p->keep);
    free(p->seen);
    free(p->owns);
    memset(p, 0, sizeof *p);
}

/* Give the mapped pages below the merges of the parts that run back, every
 * RELEASE_STEP bytes: a page one part is past may still be ahead of another
 * running at the same time (a part that starts later reads its pages back
 * from the page cache; the resident size stays flat either way). */
static void release_behind(Part *p, int64_t *released)
{
    int64_t low = low_water(&p->merge);
    __atomic_store_n(&p->low, low, __ATOMIC_RELAXED);
    if (low - *released < RELEASE_STEP)
        return;
    for (int i = 0; i < p->job->n_parts; i++) {
        int64_t other = __atomic_load_n(&p->job->parts[i].low, __ATOMIC_RELAXED);
        low = other < low ? other : low;
    }
    release_mapped(p->job->buf, p->job->len, released, low);
}

/* what accounting a part's rows needs besides its state */
typedef struct {
    Kernel *k;
    const Members *mb;
    uint8_t *seen; /* per vCPU: a row of it was accounted */
    int64_t last;  /* the last row's TSC */
    int64_t rows;  /* rows accounted */
} Accountant;

/* Account one merged row by the engine's rules (as _kernel's run() does a fed
 * row, whose checks the merge makes needless: rows of known vCPUs, states the
 * decoder checked), in time order.  A continue-running row counts only as
 * its vCPU's first record, which is its first row in this order: the first
 * pass kept those that may be (and all the others). */
static inline __attribute__((always_inline)) int account_row(void *ctx, int64_t time,
                                                             int64_t key)
{
    Accountant *a = ctx;
    int32_t v = key_vcpu(key);
    if (v >= a->mb->n)
        return M_CHANGED;
    if (key_continues(key) && a->seen[v])
        return 0;
    a->seen[v] = 1;
    if (time < a->last)
        return M_CHANGED; /* a pcpu's TSC went back: not the file the first pass read */
    a->last = time;
    a->rows++;
    int64_t start = a->k->g[G_WINDOW_START];
    /* known states, no loss window: the fast path's files (see kernel_core.h) */
    member_event_as(a->k, a->mb->member_of[v], time < start ? start : time, key_old(key),
                    key_new(key), 1);
    return 0;
}

/* Merge part p's rows and account them: rows accounted, or an M_ outcome. */
static int64_t account_part(Part *p)
{
    Accountant a = {&p->k, &p->job->members, p->seen, p->k.g[G_LAST_TIME], 0};
    int64_t released = 0;
    for (;;) {
        if (__atomic_load_n(&p->job->stop, __ATOMIC_RELAXED))
            return M_STOPPED;
        int64_t n = merge_each(&p->merge, CHUNK, account_row, &a);
        if (n < 0)
            return n;
        if (a.last > p->k.g[G_LAST_TIME])
            p->k.g[G_LAST_TIME] = a.last;
        if (n == 0)
            return a.rows;
        if (p->job->release)
            release_behind(p, &released);
    }
}

static void *run_part(void *arg)
{
    Part *p = arg;
    __atomic_store_n(&p->low, 0, __ATOMIC_RELAXED); /* it reads from the start */
    p->rows = account_part(p);
    __atomic_store_n(&p->low, INT64_MAX, __ATOMIC_RELAXED);
    return NULL;
}

/* Part i's merge and state: the domains whose number keep_part gives i, so
 * that the rows the first pass kept for them are its own: 0, or an M_
 * outcome. */
static int part_init(Job *j, int i)
{
    const Members *mb = &j->members;
    Part *p = &j->parts[i];
    memset(p, 0, sizeof *p);
    p->job = j;
    p->low = INT64_MAX;
    p->keep = malloc((size_t)mb->n + 1);
    p->seen = calloc((size_t)mb->n + 1, 1);
    p->owns = malloc((size_t)mb->n_domains + 1);
    if (p->keep == NULL || p->seen == NULL || p->owns == NULL || kernel_init(&p->k, mb) < 0)
        return M_NOMEM;
    for (int64_t m = 0; m < mb->n; m++)
        p->owns[mb->mdom[m]] = keep_part(mb->keys[m], j->n_parts) == i;
    for (int64_t v = 0; v < mb->n; v++)
        p->keep[v] = keep_part(mb->vcpu_keys[v], j->n_parts) == i;
    /* the table numbers vCPUs as the scan did: the kept rows' numbers */
    int r = merge_init(&p->merge, mb->pcpus, mb->n_pcpus, mb->vcpu_keys, mb->vcpu_first_off,
                       mb->n);
    p->merge.buf = j->buf;
    p->merge.len = j->len;
    p->merge.flags = j->flags & F_LENIENT;
    p->merge.keep = j->n_parts > 1 ? p->keep : NULL; /* for the windows it decodes */
    if (j->scan.n_keeps == j->n_parts) {
        p->merge.kept = j->scan.keeps[i].windows;
        p->merge.n_kept = j->scan.keeps[i].n_windows;
    }
    return r;
}

/* part p's members and domains, and its counters, into the state `to` */
static void gather_part(Kernel *to, const Part *p, const Members *mb)
{
    const Kernel *k = &p->k;
    for (int64_t m = 0; m < mb->n; m++) {
        if (!p->owns[mb->mdom[m]])
            continue;
        to->mstate[m] = k->mstate[m];
        to->msince[m] = k->msince[m];
        memcpy(to->mns + m * N_MBUCKETS, k->mns + m * N_MBUCKETS, N_MBUCKETS * sizeof *k->mns);
    }
    for (int64_t d = 0; d < mb->n_domains; d++) {
        if (!p->owns[d])
            continue;
        memcpy(to->dcount + 4 * d, k->dcount + 4 * d, 4 * sizeof *k->dcount);
        to->dlast[d] = k->dlast[d];
        to->ep_state[d] = k->ep_state[d];
        to->ep_len[d] = k->ep_len[d];
        memcpy(to->dns + d * N_DSTATES, k->dns + d * N_DSTATES, N_DSTATES * sizeof *k->dns);
        memcpy(to->ep_count + d * N_DSTATES, k->ep_count + d * N_DSTATES,
               N_DSTATES * sizeof *k->ep_count);
        memcpy(to->ep_max + d * N_DSTATES, k->ep_max + d * N_DSTATES,
               N_DSTATES * sizeof *k->ep_max);
        memcpy(to->ep_hist + d * N_DSTATES * N_BUCKETS, k->ep_hist + d * N_DSTATES * N_BUCKETS,
               N_DSTATES * N_BUCKETS * sizeof *k->ep_hist);
    }
    static const int summed[] = {G_MISMATCH, G_NO_CHANGE, G_LATE, G_UNBALANCED,
                                 G_IN_LOSS_EVENTS};
    for (size_t i = 0; i < sizeof summed / sizeof summed[0]; i++)
        to->g[summed[i]] += k->g[summed[i]];
    if (k->g[G_LAST_TIME] > to->g[G_LAST_TIME])
        to->g[G_LAST_TIME] = k->g[G_LAST_TIME];
}

/* The second pass's tasks (the lock held): its parts (see part_init). */
static void begin_account(Job *j)
{
    int64_t r = 0;
    for (int i = 0; i < j->n_parts && r == 0; i++)
        r = part_init(j, i);
    j->phase = P_ACCOUNTING;
    if (r < 0) {
        j->account_status = r;
        j->phase = P_DONE;
    } else {
        j->n_tasks = j->n_parts;
    }
    pthread_cond_broadcast(&j->changed);
}

/* The second pass's end: the parts' states gathered into j->accounted (and
 * the state they started from into j->start_state); rows accounted, or an
 * M_ outcome. */
static int64_t end_account(Job *j)
{
    const Members *mb = &j->members;
    int64_t r = 0;
    if (kernel_init(&j->start_state, mb) < 0 || kernel_init(&j->accounted, mb) < 0)
        r = M_NOMEM;
    int64_t rows = 0;
    for (int i = 0; i < j->n_parts && r == 0; i++) {
        if (j->parts[i].rows < 0)
            r = j->parts[i].rows;
        else
            rows += j->parts[i].rows;
        gather_part(&j->accounted, &j->parts[i], mb);
    }
    for (int i = 0; i < MAX_PARTS; i++)
        part_free(&j->parts[i]);
    scan_drop_kept(&j->scan);
    j->has_accounted = r == 0;
    return r < 0 ? r : rows;
}

/* The first pass's tasks: the file in chunks of about chunk_bytes (at most
 * MAX_CHUNKS), starting at window headers, each walked into a Scan of its
 * own (the kept rows' budget shared out).  With one thread, one chunk. */
static void begin_scan(Job *j)
{
    int64_t want = j->threads > 1 ? j->len / j->chunk_bytes : 1;
    want = want < 1 ? 1 : want > MAX_CHUNKS ? MAX_CHUNKS : want;
    int64_t at[MAX_CHUNKS];
    int n = 1 + (want > 1 ? split_points(j->buf, j->len, (int)want, j->release, at) : 0);
    j->chunk[0] = &j->scan;
    j->chunk_start[0] = 0;
    for (int i = 1; i < n; i++) {
        j->chunk_start[i] = at[i - 1];
        Scan *c = malloc(sizeof *c);
        if (c != NULL && scan_init(c, j->flags, at[i - 1]) < 0) {
            scan_free(c);
            free(c);
            c = NULL;
        }
        if (c == NULL) { /* the chunks before walk on over this one's bytes */
            n = i;
            break;
        }
        c->stop = &j->stop;
        j->chunk[i] = c;
    }
    for (int i = 0; i < n; i++) {
        j->chunk_end[i] = i + 1 < n ? j->chunk_start[i + 1] : j->len;
        (void)scan_keep(j->chunk[i], j->keep_rows / n, j->n_parts); /* none kept: no error */
    }
    j->n_chunks = n;
}

static void scan_chunk(Job *j, int i)
{
    int64_t page = (int64_t)sysconf(_SC_PAGESIZE);
    int64_t start = j->chunk_start[i];
    int64_t released = page > 0 ? (start + page - 1) / page * page : j->len;
    j->chunk_status[i] =
        scan_range(j->chunk[i], j->buf, j->len, j->chunk_end[i], j->release, &released);
}

/* The first pass's end: the chunks joined into chunk 0 (or walked again by
 * it where they do not fit at the seam), and the members numbered: its
 * status. */
static int end_scan(Job *j)
{
    int status = j->chunk_status[0];
    int64_t released = 0;
    for (int i = 1; i < j->n_chunks; i++) {
        Scan *c = j->chunk[i];
        int fits = status == SCAN_MORE && j->scan.cur[C_OFF] == j->chunk_start[i] &&
                   j->scan.cur[C_WEND] < 0 &&
                   (j->chunk_status[i] == SCAN_MORE || j->chunk_status[i] == SCAN_DONE);
        int joined = fits ? join(&j->scan, c) : JOIN_MISFIT;
        if (joined == 0)
            status = j->chunk_status[i];
        else if (joined == JOIN_NO_MEMORY)
            status = -1; /* the scan is half joined: out of memory */
        else if (status == SCAN_MORE)
            status = scan_range(&j->scan, j->buf, j->len, j->chunk_end[i], j->release, &released);
        scan_free(c);
        free(c);
        j->chunk[i] = NULL;
    }
    j->n_chunks = 1;
    if (status == SCAN_DONE && (j->len >= MAX_MERGE_BYTES || j->scan.table.n > MAX_KEPT_VCPUS))
        status = SCAN_GENERIC; /* a row's word could not hold its offset or vCPU */
    if (status == SCAN_DONE && members_init(&j->members, &j->scan) < 0)
        status = -1;
    return status;
}

/* ---- the job's tasks ---------------------------------------------------- */

static void run_task(Job *j, int phase, int i)
{
    if (phase == P_SCANNING)
        scan_chunk(j, i);
    else
        run_part(&j->parts[i]);
}

/* the end of a phase whose tasks are all done (the lock is not held) */
static void end_phase(Job *j, int phase)
{
    if (phase == P_SCANNING) {
        int status = end_scan(j);
        pthread_mutex_lock(&j->lock);
        j->scan_status = status;
        j->phase = P_SCANNED;
        if (status == SCAN_DONE && j->account_asked)
            begin_account(j);
    } else {
        int64_t rows = end_account(j);
        pthread_mutex_lock(&j->lock);
        j->account_status = rows;
        j->phase = P_DONE;
    }
    pthread_cond_broadcast(&j->changed);
    pthread_mutex_unlock(&j->lock);
}

/* Take the phase's tasks and run them (the lock held, and let go while a
 * task runs) until none is left; the thread that finishes the last ends the
 * phase. */
static void take_tasks(Job *j)
{
    while (j->next_task < j->n_tasks) {
        int phase = j->phase, i = j->next_task++;
        pthread_mutex_unlock(&j->lock);
        run_task(j, phase, i);
        pthread_mutex_lock(&j->lock);
        if (++j->tasks_done == j->n_tasks) {
            j->n_tasks = j->next_task = j->tasks_done = 0;
            pthread_mutex_unlock(&j->lock);
            end_phase(j, phase);
            pthread_mutex_lock(&j->lock);
        }
    }
}

/* Wait (the lock held) until the job has reached `phase`, taking tasks
 * meanwhile: a caller waiting for the job works on it. */
static void work_until(Job *j, int phase)
{
    while (j->phase < phase) {
        if (j->next_task < j->n_tasks)
            take_tasks(j);
        else
            pthread_cond_wait(&j->changed, &j->lock);
    }
}

/* Ask for the second pass (the lock held): it begins now if the first is over. */
static void ask_account(Job *j)
{
    j->account_asked = 1;
    if (j->phase == P_SCANNED && j->scan_status == SCAN_DONE)
        begin_account(j);
}

/* The job's own thread: the first pass, then the second once it is asked
 * for (at the start, or by a caller), until the job is done or stopped. */
static void *job_main(void *arg)
{
    Job *j = arg;
    begin_scan(j);
    pthread_mutex_lock(&j->lock);
    j->n_tasks = j->n_chunks;
    pthread_cond_broadcast(&j->changed);
    for (;;) {
        take_tasks(j);
        int over = j->phase == P_DONE || (j->phase == P_SCANNED && j->scan_status != SCAN_DONE);
        if (over || __atomic_load_n(&j->stop, __ATOMIC_RELAXED) || (!j->running && j->phase == P_SCANNED))
            break;
        pthread_cond_wait(&j->changed, &j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

static void job_clear(Job *j)
{
    if (j->running) {
        pthread_mutex_lock(&j->lock);
        __atomic_store_n(&j->stop, 1, __ATOMIC_RELAXED);
        pthread_cond_broadcast(&j->changed);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->thread, NULL); /* it never takes the GIL */
        j->running = 0;
    }
    for (int i = 1; i < j->n_chunks; i++) {
        scan_free(j->chunk[i]);
        free(j->chunk[i]);
        j->chunk[i] = NULL;
    }
    j->n_chunks = 0;
    scan_free(&j->scan);
    members_free(&j->members);
    for (int i = 0; i < MAX_PARTS; i++)
        part_free(&j->parts[i]);
    kernel_free(&j->start_state);
    kernel_free(&j->accounted);
    j->has_accounted = 0;
    if (j->view.obj != NULL)
        PyBuffer_Release(&j->view);
    j->buf = NULL;
    if (j->has_lock) {
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->changed);
        j->has_lock = 0;
    }
    j->phase = P_NEW;
    j->n_tasks = j->next_task = j->tasks_done = j->account_asked = 0;
}

/* ---- Python type --------------------------------------------------------- */

static int job_init(Job *self, PyObject *args, PyObject *kw)
{
    PyObject *buf_o;
    int flags, release;
    if (kw != NULL && PyDict_GET_SIZE(kw) != 0) {
        PyErr_SetString(PyExc_TypeError, "Job takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "Oip", &buf_o, &flags, &release))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_ValueError, "Job is busy");
        return -1;
    }
    job_clear(self);
    Py_ssize_t len;
    if ((self->buf = abi_view(&self->view, buf_o, "buf", AK_BYTES, 1, 0, &len)) == NULL)
        return -1;
    self->len = len;
    self->flags = flags & F_LENIENT;
    self->release = release;
    self->stop = 0;
    if (scan_init(&self->scan, self->flags, 0) < 0 || pthread_mutex_init(&self->lock, NULL) != 0) {
        job_clear(self);
        PyErr_NoMemory();
        return -1;
    }
    if (pthread_cond_init(&self->changed, NULL) != 0) {
        pthread_mutex_destroy(&self->lock);
        job_clear(self);
        PyErr_NoMemory();
        return -1;
    }
    self->has_lock = 1;
    self->scan.stop = &self->stop;
    return 0;
}

static void job_dealloc(Job *self)
{
    job_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int usable(Job *self, int phase_at_least)
{
    if (self->buf == NULL || self->busy || self->phase < phase_at_least) {
        PyErr_SetString(PyExc_ValueError, "Job: closed, busy, or not that far");
        return 0;
    }
    return 1;
}

/* start(threads, account, parts, keep_rows, chunk_bytes) */
static PyObject *job_start(Job *self, PyObject *args)
{
    int threads, account, parts;
    long long keep_rows, chunk_bytes;
    if (!PyArg_ParseTuple(args, "ipiLL", &threads, &account, &parts, &keep_rows, &chunk_bytes))
        return NULL;
    if (!usable(self, P_NEW) || self->phase != P_NEW) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "Job: started already");
        return NULL;
    }
    self->threads = threads < 1 ? 1 : threads;
    self->n_parts = parts < 1 ? 1 : parts > MAX_PARTS ? MAX_PARTS : parts;
    self->keep_rows = keep_rows < 0 ? 0 : keep_rows;
    self->chunk_bytes = chunk_bytes < 1 ? 1 : chunk_bytes;
    self->phase = P_SCANNING;
    self->account_asked = account;
    self->running = 1; /* before the thread looks */
    if (pthread_create(&self->thread, NULL, job_main, self) != 0) {
        /* no thread to be had: the first pass is done now, the second by account() */
        self->running = 0;
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        job_main(self);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *job_scanned(Job *self, PyObject *noargs)
{
    (void)noargs;
    if (!usable(self, P_SCANNING))
        return NULL;
    int status;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    work_until(self, P_SCANNED);
    status = self->scan_status;
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (status < 0)
        return PyErr_NoMemory();
    return PyLong_FromLong(status);
}

static PyObject *int64_bytes(const int64_t *a, int64_t n)
{
    return PyBytes_FromStringAndSize((const char *)a, (Py_ssize_t)(n * (int64_t)sizeof *a));
}

static PyObject *job_result(Job *self, PyObject *noargs)
{
    (void)noargs;
    if (!usable(self, P_SCANNED))
        return NULL;
    if (self->scan_status != SCAN_DONE) {
        PyErr_SetString(PyExc_ValueError, "Job: the first pass found nothing to report");
        return NULL;
    }
    const Scan *s = &self->scan;
    const Members *mb = &self->members;
    PyObject *firsts = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(mb->n * sizeof(First)));
    if (firsts == NULL)
        return NULL;
    First *out = (First *)PyBytes_AS_STRING(firsts);
    for (int64_t m = 0; m < mb->n; m++)
        out[m] = s->firsts[mb->order[m]];
    return Py_BuildValue("(NNNNNN)", int64_bytes(s->stats, N_STATS),
                         int64_bytes(s->pcpu_tsc, MAX_PCPUS),
                         int64_bytes(s->pcpu_first, MAX_PCPUS),
                         int64_bytes(s->pcpu_rows, MAX_PCPUS), int64_bytes(s->sum, N_SUM),
                         firsts);
}

static PyObject *job_account(Job *self, PyObject *noargs)
{
    (void)noargs;
    if (!usable(self, P_SCANNING))
        return NULL;
    int64_t rows = M_CHANGED;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    work_until(self, P_SCANNED);
    if (self->scan_status == SCAN_DONE) {
        if (!self->account_asked)
            ask_account(self);
        work_until(self, P_DONE);
        rows = self->account_status;
    }
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (self->scan_status < 0 || rows == M_NOMEM)
        return PyErr_NoMemory();
    return PyLong_FromLongLong(rows < 0 ? -1 : rows);
}

static PyObject *job_export(Job *self, PyObject *state)
{
    if (!usable(self, P_DONE))
        return NULL;
    if (!self->has_accounted) {
        PyErr_SetString(PyExc_ValueError, "Job: nothing accounted to export");
        return NULL;
    }
    Bound b;
    memset(&b, 0, sizeof b);
    if (bind_state(&b, state) < 0) {
        bound_release(&b);
        return NULL;
    }
    const Kernel *start = &self->start_state;
    int same = b.k.n_members == start->n_members && b.k.n_domains == start->n_domains &&
               same_state(&b.k, start);
    if (same)
        copy_state(&b.k, &self->accounted);
    bound_release(&b);
    return PyBool_FromLong(same);
}

static PyObject *job_close(Job *self, PyObject *noargs)
{
    (void)noargs;
    if (self->busy) {
        PyErr_SetString(PyExc_ValueError, "Job is busy");
        return NULL;
    }
    job_clear(self);
    Py_RETURN_NONE;
}

static PyMethodDef job_methods[] = {
    {"start", (PyCFunction)job_start, METH_VARARGS,
     "start(threads, account, parts, keep_rows, chunk_bytes): the first pass (and with "
     "`account` the second) on a thread of its own"},
    {"scanned", (PyCFunction)job_scanned, METH_NOARGS,
     "scanned() -> the first pass's status, once it is over"},
    {"result", (PyCFunction)job_result, METH_NOARGS,
     "result() -> (stats, pcpu_tsc, pcpu_first, pcpu_rows, summary, firsts) as int64 bytes; "
     "firsts: per vCPU (key, TSC, byte offset, old state), in the order of their TSC and offset"},
    {"account", (PyCFunction)job_account, METH_NOARGS,
     "account() -> rows accounted by the second pass, or -1 if the file did not merge"},
    {"export", (PyCFunction)job_export, METH_O,
     "export(state) -> True if the engine's state arrays now hold the accounted state"},
    {"close", (PyCFunction)job_close, METH_NOARGS, "close(): stop, and let go of the buffer"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject JobType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runstate.sources.xentrace._job.Job",
    .tp_basicsize = sizeof(Job),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Exact mode's fast path for one xentrace file, on threads of its own.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)job_init,
    .tp_dealloc = (destructor)job_dealloc,
    .tp_methods = job_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_job", "exact mode's fast path for one xentrace file", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__job(void)
{
    if (PyType_Ready(&JobType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL)
        return NULL;
    Py_INCREF(&JobType);
    if (PyModule_AddObject(mod, "Job", (PyObject *)&JobType) < 0 ||
        ABI_CONST_AS(mod, "ABI_VERSION", KERNEL_ABI_VERSION) < 0 ||
        ABI_CONST(mod, MAX_PCPUS) < 0 || ABI_CONST(mod, N_STATS) < 0 ||
        ABI_CONST(mod, SCAN_DONE) < 0 || ABI_CONST(mod, SCAN_GENERIC) < 0 ||
        ABI_CONST(mod, SUM_FIRST) < 0 || ABI_CONST(mod, SUM_LAST) < 0 ||
        ABI_CONST(mod, SUM_LAST_CHANGE) < 0 || ABI_CONST(mod, SUM_ROWS) < 0 ||
        ABI_CONST(mod, SUM_TRUNCATED) < 0 || ABI_CONST(mod, N_SUM) < 0 ||
        ABI_CONST(mod, F_LENIENT) < 0)
        Py_CLEAR(mod);
    return mod;
}
