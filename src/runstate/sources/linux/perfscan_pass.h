/* The names pass of the perf.data C pass (_perfscan.c), on a thread of its own.
 *
 * Scanner.start(capacity, chunk_rows, guess) makes seven columns of `capacity` rows
 * (time i64, cpu i32, kind i8, pid i32, other i32, prev_state i64, actor i32) in pages
 * mapped for them (perfscan_block.h; only the rows written take memory), and starts a
 * thread that walks the whole data section as read() would, filling them: the
 * time-ordered chunks (a chunk ends at a round's end once chunk_rows events were given)
 * and the losses between them are listed as items, as the reader's cache takes
 * them.  Past `capacity` events nothing more is kept (overflow; the pages already written
 * are given back): the walk goes on for the names, the active tids and what it counts
 * (in a file not cut short, without holding or ordering the events any more: they are
 * all released in the end, so only their tids count).  With `guess`, keeping is given up
 * as soon as a sixteenth of the data says the events will be over 1.5 times `capacity`
 * (see bound_to_overflow).  Nothing on the thread touches Python objects, so the caller
 * may go on with anything, importing numpy included; wait() joins the thread (without
 * the GIL) and the other methods wait first.
 */
#ifndef RUNSTATE_PERFSCAN_PASS_H
#define RUNSTATE_PERFSCAN_PASS_H

#include "perfscan_records.h"

static const int COLUMN_SIZE[7] = {8, 4, 1, 4, 4, 8, 4};

static int push_item(Scanner *s, int type, Py_ssize_t start, Py_ssize_t stop)
{
    if (grow(&s->items, s->items.n + 1, sizeof(Item)) < 0)
        return -1;
    Item *it = (Item *)s->items.v + s->items.n++;
    it->type = type;
    it->start = start;
    it->stop = stop;
    it->loss = s->taken;
    return 0;
}

/* madvise the whole pages of the columns' rows [0, rows) */
static void advise_rows(Scanner *s, Py_ssize_t rows, int advice)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return;
    for (int k = 0; k < 7; k++) {
        uintptr_t lo = (uintptr_t)s->own_at[k], hi = lo + (uintptr_t)rows * COLUMN_SIZE[k];
        lo = (lo + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
        hi = hi / (uintptr_t)page * (uintptr_t)page;
        if (hi > lo)
            madvise((void *)lo, hi - lo, advice);
    }
}

/* large columns in huge pages where the kernel has them (as numpy asks for its large
 * arrays): a fault a 2 MiB page instead of one a 4 KiB page */
static void advise_huge(Scanner *s)
{
#ifdef MADV_HUGEPAGE
    if (s->own_cap * 8 >= ((Py_ssize_t)4 << 20))
        advise_rows(s, s->own_cap, MADV_HUGEPAGE);
#else
    (void)s;
#endif
}

/* the columns' rows [0, rows) are no longer wanted: their whole pages go back */
static void give_back(Scanner *s, Py_ssize_t rows)
{
    advise_rows(s, rows, MADV_DONTNEED);
}

/* with a guess allowed: a sixteenth of the data read, the events so far say the whole
 * holds half as many again as the capacity, so keeping them is given up early (the
 * caller starts a pass that keeps them if the guess proves wrong) */
static int bound_to_overflow(const Scanner *s, Py_ssize_t filled)
{
    int64_t size = s->data_end - s->data_off, read = s->pos - s->data_off;
    if (read <= 0 || read < size / 16)
        return 0;
    return (double)filled * (double)size / (double)read > 1.5 * (double)s->own_cap;
}

/* from here on the pass only names: the events held so far would all be released
 * (the file is not cut short), so they are counted and marked active now */
static void names_only(Scanner *s)
{
    const Ev *ev = s->held.v;
    for (Py_ssize_t i = s->head; i < s->held.n; i++) {
        mark_active(s, ev[i].pid);
        mark_active(s, ev[i].other);
    }
    s->pass_count += s->held.n - s->head;
    s->held.n = s->released = s->head = 0;
    s->marks.n = s->marks_head = 0;
    s->pending.n = 0;
    s->names_only = 1;
}

/* the pass: 0 at the end, 1 at an error in the file (s->err_*), -1 out of memory or a
 * file that could not be read (s->os_errno), 2 when cancelled */
static int run_pass(Scanner *s)
{
    Py_ssize_t filled = 0, start = 0;
    for (;;) {
        if (__atomic_load_n(&s->cancel, __ATOMIC_RELAXED))
            return 2;
        void *col[7];
        for (int k = 0; k < 7; k++)
            col[k] = (char *)s->own_at[k] + filled * COLUMN_SIZE[k];
        Py_ssize_t n;
        int keep = !s->pass_overflow;
        int why = fill(s, keep ? col : NULL, keep ? s->own_cap - filled : PY_SSIZE_T_MAX,
                       s->pass_rows, &n);
        if (why == -2)
            return -1;
        s->pass_count += n;
        if (keep)
            filled += n;
        if (why == STOP_ERROR)
            return 1;
        if (why == STOP_FULL || (keep && s->pass_guess && bound_to_overflow(s, filled))) {
            s->pass_overflow = 1;
            s->items.n = 0;
            give_back(s, filled);
            if (!s->truncated)
                names_only(s);
            continue;
        }
        if (keep && filled > start && push_item(s, ITEM_CHUNK, start, filled) < 0)
            return -1;
        start = filled;
        if (why == STOP_LOSS && keep && push_item(s, ITEM_LOSS, 0, 0) < 0)
            return -1;
        if (why == STOP_END)
            return 0;
    }
}

static void *pass_thread(void *arg)
{
    Scanner *s = arg;
    s->pass_rc = run_pass(s);
    unmap(s);
    return NULL;
}

/* join the pass if it runs (the GIL is let go meanwhile) */
static void settle(Scanner *s)
{
    if (!s->pass_running)
        return;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(s->thread, NULL);
    Py_END_ALLOW_THREADS
    s->pass_running = 0;
}

#endif
