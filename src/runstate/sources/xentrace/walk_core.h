/*
 * Decoding xentrace windows and records: the one definition of what a record
 * means, shared by the chunk walker (_walk.c) and the exact-mode fast path
 * (_job.c, _merge.c), so that both read every byte the same way.
 *
 * Layout (docs/xentrace.md): the file is a sequence of windows, each a
 * 12-byte TRC_TRACE_CPU_CHANGE record (header word 0x2001f003, pcpu, size)
 * followed by `size` bytes of that pcpu's records.  A record is a header word
 * (event id bits 0-27, extra word count bits 28-30, TSC flag bit 31), an
 * optional 64-bit TSC and 0-7 extra words.  Little-endian.
 *
 * All position state lives in a cursor array between walks, so a walk can
 * stop when its output is full or the buffer ends (stdin) and continue later
 * from exactly the same place.  Every read is checked against the bytes
 * handed over.
 */
#ifndef RUNSTATE_XENTRACE_WALK_CORE_H
#define RUNSTATE_XENTRACE_WALK_CORE_H

#include <stdint.h>
#include <string.h>

#include "xentrace_format.h"

/* cursor slots */
enum { C_OFF, C_WEND, C_PCPU, C_STATUS, C_ERR_OFF, C_ERR_CODE, C_ERR_WORD, C_ERR_AUX, N_CURSOR };
/* status */
enum { ST_FULL = 0, ST_MORE = 1, ST_ERROR = 2 };
/* error codes (mirrored in walk.py) */
enum {
    E_NONE, E_HEADER, E_PCPU, E_WSIZE, E_CLASS, E_OVERRUN, E_LOST_TSC, E_STATE,
    E_BACKWARDS, E_LOST_SIZE, E_RS_SIZE
};
/* row kinds */
enum { K_CHANGE, K_CONTINUE, K_LOST, K_WRAP, K_OTHER };
/* stats slots */
enum {
    S_WINDOWS, S_CHANGE, S_CONTINUE, S_LOST, S_LOST_COUNT, S_WRAP, S_OTHER, S_BAD,
    S_RESYNC, S_FIRST_TSC, S_LAST_TSC, S_RECORDS, S_ROUNDS, S_PREV_PCPU, N_STATS
};
/* flags */
enum { F_LENIENT = 1, F_OTHER_ROWS = 2 };
/* what decoding one record gave: nothing to emit, a row, or need more bytes
 * (-1: an error, described in the cursor's error slots) */
enum { REC_NONE = 0, REC_MORE = 1, REC_ROW = 2 };

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v; /* little-endian hosts only (x86, arm) */
}

static inline int64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return (int64_t)v;
}

static inline int header_ok(const uint8_t *p)
{
    int32_t pcpu = (int32_t)rd32(p + 4);
    uint32_t size = rd32(p + 8);
    return rd32(p) == CPU_CHANGE_HEADER && pcpu >= 0 && pcpu < MAX_PCPUS && size % 4 == 0 &&
           (int64_t)size <= MAX_WINDOW;
}

/* A walk in progress.  The cursor is held here, by value, rather than in the
 * caller's cursor array: a walk is a local variable, so the compiler keeps
 * the offsets in registers (through an array that aliases the counters, each
 * record cost a store and a reload of its offset: about half the time of a
 * walk).  walk_load/walk_save move it from and to the array. */
typedef struct {
    const uint8_t *buf;
    int64_t base, end; /* absolute offsets covered by buf */
    int64_t off;       /* the next byte to read */
    int64_t wend;      /* end of the open window, -1: none open */
    int64_t pcpu;      /* the open (or last) window's pcpu */
    int64_t tsc;       /* the open window's pcpu's last TSC, -1: none yet */
    int64_t *pcpu_tsc; /* every pcpu's last TSC (NULL: not tracked); tsc goes back
                          there when the window is left or the walk saved */
    int64_t stats[N_STATS];
    int64_t status, err_off, err_code, err_word, err_aux;
    int flags;
} Walk;

#define WALK_INLINE static inline __attribute__((always_inline))

WALK_INLINE void walk_load(Walk *w, const int64_t *cur, const int64_t *stats)
{
    w->off = cur[C_OFF];
    w->wend = cur[C_WEND];
    w->pcpu = cur[C_PCPU];
    w->status = cur[C_STATUS];
    w->err_off = cur[C_ERR_OFF];
    w->err_code = cur[C_ERR_CODE];
    w->err_word = cur[C_ERR_WORD];
    w->err_aux = cur[C_ERR_AUX];
    w->tsc = w->wend >= 0 && w->pcpu_tsc != NULL ? w->pcpu_tsc[w->pcpu] : -1;
    memcpy(w->stats, stats, sizeof w->stats);
}

/* the open window's pcpu's TSC counts towards the largest TSC seen: kept up
 * to date when a window is left or a walk saved, not at every record */
WALK_INLINE void note_last_tsc(Walk *w)
{
    if (w->tsc > w->stats[S_LAST_TSC])
        w->stats[S_LAST_TSC] = w->tsc;
}

WALK_INLINE void walk_save(Walk *w, int64_t *cur, int64_t *stats)
{
    if (w->wend >= 0)
        note_last_tsc(w);
    cur[C_OFF] = w->off;
    cur[C_WEND] = w->wend;
    cur[C_PCPU] = w->pcpu;
    cur[C_STATUS] = w->status;
    cur[C_ERR_OFF] = w->err_off;
    cur[C_ERR_CODE] = w->err_code;
    cur[C_ERR_WORD] = w->err_word;
    cur[C_ERR_AUX] = w->err_aux;
    if (w->wend >= 0 && w->pcpu_tsc != NULL)
        w->pcpu_tsc[w->pcpu] = w->tsc;
    memcpy(stats, w->stats, sizeof w->stats);
}

/* close the open window once its bytes are read */
WALK_INLINE void leave_window_if_done(Walk *w)
{
    if (w->wend >= 0 && w->off >= w->wend) {
        note_last_tsc(w);
        if (w->pcpu_tsc != NULL)
            w->pcpu_tsc[w->pcpu] = w->tsc;
        w->wend = -1;
    }
}

static inline int fail(Walk *w, int64_t off, int code, int64_t word, int64_t aux)
{
    w->status = ST_ERROR;
    w->err_off = off;
    w->err_code = code;
    w->err_word = word;
    w->err_aux = aux;
    return -1;
}

/* at a window header: 0 = entered the window, 1 = need more data, -1 = error */
WALK_INLINE int enter_window(Walk *w)
{
    for (;;) {
        int64_t off = w->off;
        if (w->end - off < 12)
            return 1;
        const uint8_t *p = w->buf + (off - w->base);
        uint32_t hdr = rd32(p);
        int32_t pcpu = (int32_t)rd32(p + 4);
        uint32_t size = rd32(p + 8);
        int code = hdr != CPU_CHANGE_HEADER ? E_HEADER
                   : (pcpu < 0 || pcpu >= MAX_PCPUS) ? E_PCPU
                   : (size % 4 != 0 || (int64_t)size > MAX_WINDOW) ? E_WSIZE
                   : E_NONE;
        if (code != E_NONE) {
            if (!(w->flags & F_LENIENT))
                return fail(w, off, code, hdr, code == E_PCPU ? pcpu : (int64_t)size);
            /* lenient: look for the next plausible window header, and enter it */
            int64_t q = off + 4;
            while (w->end - q >= 12 && !header_ok(w->buf + (q - w->base)))
                q += 4;
            w->stats[S_RESYNC] += 1;
            w->off = q;
            continue;
        }
        w->off = off + 12;
        w->wend = off + 12 + (int64_t)size;
        w->pcpu = pcpu;
        w->tsc = w->pcpu_tsc != NULL ? w->pcpu_tsc[pcpu] : -1;
        w->stats[S_WINDOWS] += 1;
        /* xentrace writes pcpus in increasing order each polling round */
        if (w->stats[S_WINDOWS] > 1 && pcpu <= w->stats[S_PREV_PCPU])
            w->stats[S_ROUNDS] += 1;
        w->stats[S_PREV_PCPU] = pcpu;
        return 0;
    }
}

/* One decoded record.  key: runstate/continue: dom << 16 | vcpu; lost: the
 * payload's dom << 16 | vcpu; other: the event id.  aux: lost: first_tsc. */
typedef struct {
    int64_t tsc, key, aux, off;
    int kind, old, new;
} Row;

WALK_INLINE void set_row(Row *r, int64_t tsc, int64_t key, int kind, int old, int new,
                         int64_t aux, int64_t off)
{
    r->tsc = tsc;
    r->key = key;
    r->kind = kind;
    r->old = old;
    r->new = new;
    r->aux = aux;
    r->off = off;
}

/* Decode one record at the cursor (inside a window): REC_NONE, REC_ROW (the
 * row is in *r), REC_MORE or -1 (error).  Always inlined: the row then stays
 * in registers too. */
WALK_INLINE int record(Walk *w, Row *r)
{
    int64_t off = w->off;
    int64_t wend = w->wend;
    int lenient = w->flags & F_LENIENT;
    if (w->end - off < 4)
        return REC_MORE;
    const uint8_t *p = w->buf + (off - w->base);
    uint32_t hdr = rd32(p);
    int has_tsc = (int)(hdr >> 31);
    int n_extra = (int)((hdr >> 28) & 7);
    int64_t size = 4 + 8 * has_tsc + 4 * n_extra;
    if (off + size > wend) {
        if (!lenient)
            return fail(w, off, E_OVERRUN, hdr, wend - off);
        w->stats[S_BAD] += 1;
        w->off = wend; /* skip the rest of the window */
        return REC_NONE;
    }
    if (w->end - off < size)
        return REC_MORE;
    uint32_t event = hdr & EVENT_MASK;
    uint32_t cls = (event >> 16) & 0xfff;
    int64_t tsc = w->tsc;
    const uint8_t *x = p + 4 + 8 * has_tsc;
    w->off = off + size;
    w->stats[S_RECORDS] += 1;
    if (cls == 0 || (cls & (cls - 1)) != 0) {
        if (!lenient)
            return fail(w, off, E_CLASS, hdr, 0);
        w->stats[S_BAD] += 1;
        return REC_NONE;
    }
    if (has_tsc) {
        tsc = rd64(p + 4);
        if (w->tsc >= 0 && tsc < w->tsc) {
            if (!lenient) {
                w->off = off;
                return fail(w, off, E_BACKWARDS, hdr, w->tsc);
            }
            w->stats[S_BAD] += 1;
            tsc = w->tsc;
        }
        /* a pcpu's TSCs never decrease, so its first is its smallest */
        if (w->tsc < 0 && (w->stats[S_FIRST_TSC] < 0 || tsc < w->stats[S_FIRST_TSC]))
            w->stats[S_FIRST_TSC] = tsc;
        w->tsc = tsc;
    }
    if ((event & RUNSTATE_MASK) == RUNSTATE_CHANGE || event == CONTINUE_RUNNING) {
        int old = 0, new = 0, kind = K_CONTINUE;
        if (event != CONTINUE_RUNNING) {
            old = (int)((event >> 8) & 0xf);
            new = (int)((event >> 4) & 0xf);
            kind = K_CHANGE;
        }
        int code = n_extra < 1 ? E_RS_SIZE : (old > 3 || new > 3) ? E_STATE : E_NONE;
        if (code == E_NONE && tsc < 0)
            code = E_RS_SIZE;
        if (code != E_NONE) {
            if (!lenient)
                return fail(w, off, code, hdr, 0);
            w->stats[S_BAD] += 1;
            return REC_NONE;
        }
        uint32_t ids = rd32(x);
        w->stats[S_CHANGE] += kind == K_CHANGE;
        w->stats[S_CONTINUE] += kind == K_CONTINUE;
        set_row(r, tsc, (int64_t)(ids >> 16) << 16 | (ids & 0xffff), kind, old, new, 0, off);
        return REC_ROW;
    }
    if (event == LOST_RECORDS) {
        if (n_extra != 4 || !has_tsc) {
            if (!lenient)
                return fail(w, off, E_LOST_SIZE, hdr, 0);
            w->stats[S_BAD] += 1;
            return REC_NONE;
        }
        uint32_t ids = rd32(x + 4); /* domain in the low half, vcpu in the high half */
        int64_t first = (int64_t)((uint64_t)rd32(x + 8) | (uint64_t)rd32(x + 12) << 32);
        if (tsc <= first) {
            if (!lenient)
                return fail(w, off, E_LOST_TSC, tsc, first);
            w->stats[S_BAD] += 1;
            return REC_NONE;
        }
        w->stats[S_LOST] += 1;
        w->stats[S_LOST_COUNT] += rd32(x);
        set_row(r, tsc, (int64_t)(ids & 0xffff) << 16 | (ids >> 16), K_LOST, 0, 0, first, off);
        return REC_ROW;
    }
    if (event == WRAP_BUFFER) {
        w->stats[S_WRAP] += 1;
        if (has_tsc && (w->flags & F_OTHER_ROWS)) {
            set_row(r, tsc, 0, K_WRAP, 0, 0, 0, off);
            return REC_ROW;
        }
        return REC_NONE;
    }
    w->stats[S_OTHER] += 1;
    if ((w->flags & F_OTHER_ROWS) && tsc >= 0) {
        set_row(r, tsc, (int64_t)event, K_OTHER, 0, 0, 0, off);
        return REC_ROW;
    }
    return REC_NONE;
}

/* The first timestamp of the window whose records span [q, wend): the TSC of
 * its first record that has one (or that record's first_tsc, if it is a lost
 * record naming an earlier one), -1 if none.  Records are only sized here,
 * not checked: this bounds what the window can hold, before it is decoded. */
static inline int64_t window_first_tsc(const uint8_t *buf, int64_t base, int64_t q, int64_t wend)
{
    while (wend - q >= 4) {
        const uint8_t *p = buf + (q - base);
        uint32_t hdr = rd32(p);
        int64_t size = 4 + 8 * (hdr >> 31) + 4 * ((hdr >> 28) & 7);
        if (q + size > wend)
            return -1;
        if (hdr >> 31) {
            int64_t first = rd64(p + 4);
            if ((hdr & EVENT_MASK) == LOST_RECORDS && size == 28) {
                int64_t lf = (int64_t)((uint64_t)rd32(p + 20) | (uint64_t)rd32(p + 24) << 32);
                if (lf < first)
                    first = lf;
            }
            return first;
        }
        q += size;
    }
    return -1;
}

#endif
