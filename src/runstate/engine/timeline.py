"""Slices: when each domain and each member was in which state, as (start, end, state).

The engine keeps totals and episode histograms, which is all a report needs;
pictures and trace exports need the episodes themselves.  :class:`Timeline`
takes the same batches as :class:`~runstate.engine.core.Engine` (with the same
window start, first-pass resolution and initial states) and streams slices to a
sink, under the same rules, so the slices of each state of a domain add up to
the engine's ticks for that state:

* the state of ``[t, next)`` is the state after *all* rows at ``t`` (the
  engine's lazy accounting), so simultaneous changes make no zero-length slice;
* a loss window (between LOSS_BEGIN/LOSS_END markers) and a member whose state
  is unknown make the domain ``lost``; after a loss window each member takes
  the state its next record reveals (from the resolution), else it is unknown;
* a slice is one episode: consecutive equal states are one slice.

Work is vectorized per batch: rows are sorted by (owner, time), running counts
per category give each domain's counts after every row, the state after the
last row of each (owner, time) is classified and run-length encoded.  Rows at
a batch's last timestamp are held back to the next batch, so every instant is
decided with all its rows.  Memory is per member and domain plus one batch.

Member slices of a one-pass run (no resolution) start at each member's first
record: the engine's back-dating of a member's earlier time is not drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from runstate.engine.resolve import Resolution
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

#: a domain or member with no state at that moment (outside its lifetime): no slice
NO_STATE = 7
#: member slice states: the per-member buckets running..offline (0..3) and lost (4)
MEMBER_LOST = 4

# member state -> category counted per domain: running, runnable, blocked (offline too),
# unknown; -1 does not count (absent, unseen)
_CATEGORY = np.array([0, 1, 2, 2, -1, 3, -1], np.int8)
# (running>0 | runnable>0 << 1 | blocked>0 << 2) -> domain state (7: none)
_BY_MASK = np.array([NO_STATE, 0, 1, 2, 3, 4, 5, 2], np.int8)
_DOMAIN_LOST = 6
_UNSEEN, _UNKNOWN, _ABSENT = int(MemberState.UNSEEN), int(MemberState.UNKNOWN), \
    int(MemberState.ABSENT)


class Lane(IntEnum):
    """Whose slices a :class:`SliceBatch` holds."""

    DOMAIN = 0
    MEMBER = 1


@dataclass(frozen=True, slots=True)
class SliceBatch:
    """Closed slices ``[start, end)`` in ticks, ordered by (owner, start).

    ``owner`` is a domain index (states: :class:`~runstate.model.states.DomainState`
    codes) or a member index (states: index into ``MEMBER_BUCKETS``).
    """

    lane: Lane
    owner: npt.NDArray[np.int32]
    start: I64
    end: I64
    state: I8

    def __len__(self) -> int:
        return int(self.start.shape[0])


SliceSink = Callable[[SliceBatch], None]


@dataclass(slots=True)
class _Runs:
    """Per owner: the state of the open slice and when it began."""

    state: I8
    since: I64

    def grow(self, n: int, now: int) -> None:
        old = self.state.shape[0]
        if n > old:
            self.state = np.concatenate([self.state, np.full(n - old, NO_STATE, np.int8)])
            self.since = np.concatenate([self.since, np.full(n - old, now, np.int64)])


@dataclass(slots=True)
class _Rows:
    """Changes of one chunk in time order: who, when, member state after, count deltas."""

    time: list[I64]
    member: list[npt.NDArray[np.int32]]
    state: list[I8]
    prev: list[I8]
    depth: list[I64]

    def add(self, time: I64, member: npt.NDArray[np.int32], state: I8, prev: I8,
            depth: int) -> None:
        self.time.append(time)
        self.member.append(member)
        self.state.append(state)
        self.prev.append(prev)
        self.depth.append(np.full(time.shape[0], depth, np.int64))


class Timeline:
    """Streams domain and member slices of a run (see module docstring).

    Args mirror :class:`~runstate.engine.core.Engine`: ``start_ticks`` is the
    window start (rows before it count as at it), ``end_ticks`` its end (later rows
    do not count), ``resolution`` the first pass, ``initial`` known states at
    the start.
    """

    def __init__(self, registry: Registry, sink: SliceSink, *, start_ticks: int,
                 end_ticks: int, resolution: Resolution | None = None,
                 initial: dict[int, MemberState] | None = None) -> None:
        self.registry = registry
        self._sink = sink
        self._start = start_ticks
        self._end = end_ticks
        self._resolution = resolution
        self._initial = dict(initial or {})
        self._mstate = np.zeros(0, np.int8)
        self._mdom = np.zeros(0, np.int32)
        self._dcount = np.zeros((0, 4), np.int64)
        self._domains = _Runs(np.zeros(0, np.int8), np.zeros(0, np.int64))
        self._members = _Runs(np.zeros(0, np.int8), np.zeros(0, np.int64))
        self._depth = 0
        self._epoch = 0
        self._now = start_ticks
        self._tail = EventBatch.empty()
        self._grow()

    # ---- feeding ----------------------------------------------------------

    def feed(self, batch: EventBatch) -> bool:
        """Take a time-sorted batch; rows at its last instant wait for the next batch.

        Rows after the window end do not count; returns False once they are reached.
        """
        more = True
        if len(batch) and int(batch.time[-1]) > self._end:
            batch = batch.slice(0, int(np.searchsorted(batch.time, self._end, side="right")))
            more = False
        if len(batch) == 0:
            return more
        chunk = EventBatch.concat([self._tail, batch]) if len(self._tail) else batch
        clamped = np.maximum(chunk.time, self._start)
        cut = int(np.searchsorted(clamped, clamped[-1], side="left"))
        self._tail = _owned(chunk.slice(cut, len(chunk)))
        if cut:
            self._process(chunk.slice(0, cut), clamped[:cut])
        return more

    def finish(self) -> None:
        """Decide the held-back instant and close every open slice at the window end."""
        if len(self._tail):
            tail, self._tail = self._tail, EventBatch.empty()
            self._process(tail, np.maximum(tail.time, self._start))
        self._grow()
        end = max(self._end, self._now)
        for lane, runs in ((Lane.DOMAIN, self._domains), (Lane.MEMBER, self._members)):
            owners = np.flatnonzero((runs.state != NO_STATE) & (runs.since < end))
            if owners.size:
                self._sink(SliceBatch(lane, owners.astype(np.int32), runs.since[owners].copy(),
                                      np.full(owners.size, end, np.int64),
                                      runs.state[owners].copy()))
            runs.state[:] = NO_STATE

    # ---- one chunk: every instant in it complete ---------------------------

    def _process(self, chunk: EventBatch, time: I64) -> None:
        self._grow()
        rows = _Rows([], [], [], [], [])
        markers = np.flatnonzero(chunk.member < 0).tolist()
        start = 0
        for pos in [*markers, len(chunk)]:
            self._segment(rows, chunk, time, start, pos)
            if pos < len(chunk):
                self._marker(rows, int(time[pos]), int(chunk.new_state[pos]))
            start = pos + 1
        if not rows.time:
            return
        t = np.concatenate(rows.time)
        m = np.concatenate(rows.member)
        state = np.concatenate(rows.state)
        prev = np.concatenate(rows.prev)
        depth = np.concatenate(rows.depth)
        # the loss depth that holds after each instant: the depth after its last row
        final_depth = depth[np.searchsorted(t, t, side="right") - 1]
        self._domain_slices(t, m, state, prev, final_depth)
        self._member_slices(t, m, state, final_depth)
        self._now = int(t[-1])

    def _segment(self, rows: _Rows, chunk: EventBatch, time: I64, lo: int, hi: int) -> None:
        """Member rows between two markers: each row's previous state, then the new states."""
        if hi <= lo:
            return
        member = chunk.member[lo:hi]
        new = chunk.new_state[lo:hi]
        order = np.argsort(member, kind="stable")
        sorted_m = member[order]
        first = np.ones(order.size, bool)
        first[1:] = sorted_m[1:] != sorted_m[:-1]
        new_sorted = new[order]
        prev_sorted = np.empty(order.size, np.int8)
        prev_sorted[1:] = new_sorted[:-1]
        prev_sorted[first] = self._mstate[sorted_m[first]]
        prev = np.empty(order.size, np.int8)
        prev[order] = prev_sorted
        rows.add(time[lo:hi], member, new, prev, self._depth)
        last = np.r_[first[1:], True]  # each member's last row in the segment
        self._mstate[sorted_m[last]] = new_sorted[last]

    def _marker(self, rows: _Rows, t: int, code: int) -> None:
        """A loss marker changes the depth for everyone: touch every member at ``t``."""
        before = self._mstate.copy()
        if code == LOSS_BEGIN:
            self._depth += 1
        elif code == LOSS_END and self._depth > 0:
            self._depth -= 1
            if self._depth == 0:
                self._start_epoch()
        else:
            return
        n = before.shape[0]
        rows.add(np.full(n, t, np.int64), np.arange(n, dtype=np.int32), self._mstate.copy(),
                 before, self._depth)

    def _start_epoch(self) -> None:
        """After lost data: revealed members take their state, the others are unknown."""
        self._epoch += 1
        before = self._mstate
        counting = (before != _ABSENT) & (before != _UNSEEN)
        after = np.where(counting, np.int8(_UNKNOWN), before).astype(np.int8)
        table = self._resolution.states if self._resolution is not None else None
        if table is not None and self._epoch < table.shape[0]:
            k = min(after.shape[0], table.shape[1])
            row = table[self._epoch, :k]
            known = row >= 0
            after[:k][known] = row[known]
        self._mstate = after

    # ---- domains and members ------------------------------------------------

    def _domain_slices(self, t: I64, m: npt.NDArray[np.int32], state: I8, prev: I8,
                       depth: I64) -> None:
        dom = self._mdom[m]
        # one-hot categories after minus before (-1, no category, matches no column)
        columns = np.arange(4, dtype=np.int8)
        delta = ((_CATEGORY[state][:, None] == columns).astype(np.int64)
                 - (_CATEGORY[prev][:, None] == columns))
        order = np.argsort(dom, kind="stable")
        dom, t, delta, depth = dom[order], t[order], delta[order], depth[order]
        running = np.cumsum(delta, axis=0)
        group_start = np.flatnonzero(np.r_[True, dom[1:] != dom[:-1]])
        sizes = np.diff(np.r_[group_start, dom.shape[0]])
        before_group = np.repeat(running[group_start] - delta[group_start], sizes, axis=0)
        counts = running - before_group + self._dcount[dom]
        last = _last_of_instant(dom, t)
        ends = np.flatnonzero(last)
        group_end = np.r_[group_start[1:], dom.shape[0]] - 1
        self._dcount[dom[group_end]] = counts[group_end]
        values = _classify(counts[ends], depth[ends])
        self._emit(Lane.DOMAIN, self._domains, dom[ends], t[ends], values)

    def _member_slices(self, t: I64, m: npt.NDArray[np.int32], state: I8, depth: I64) -> None:
        order = np.argsort(m, kind="stable")
        m, t, state, depth = m[order], t[order], state[order], depth[order]
        ends = np.flatnonzero(_last_of_instant(m, t))
        s, d = state[ends], depth[ends]
        values = np.where((s == _ABSENT) | (s == _UNSEEN), np.int8(NO_STATE),
                          np.where((s == _UNKNOWN) | (d > 0), np.int8(MEMBER_LOST), s))
        self._emit(Lane.MEMBER, self._members, m[ends], t[ends], values.astype(np.int8))

    def _emit(self, lane: Lane, runs: _Runs, owner: npt.NDArray[np.int32], t: I64,
              values: I8) -> None:
        """Run-length encode each owner's states at its instants; send the closed slices."""
        first = np.r_[True, owner[1:] != owner[:-1]]
        before = np.empty_like(values)
        before[1:] = values[:-1]
        before[first] = runs.state[owner[first]]
        change = np.flatnonzero(values != before)
        if change.size == 0:
            return
        c_owner, c_time = owner[change], t[change]
        c_first = np.r_[True, c_owner[1:] != c_owner[:-1]]
        begin = np.empty_like(c_time)
        begin[1:] = c_time[:-1]
        begin[c_first] = runs.since[c_owner[c_first]]
        closed = before[change]
        keep = (closed != NO_STATE) & (c_time > begin)
        if keep.any():
            self._sink(SliceBatch(lane, c_owner[keep].astype(np.int32), begin[keep],
                                  c_time[keep], closed[keep].astype(np.int8)))
        c_last = np.r_[c_owner[1:] != c_owner[:-1], True]
        runs.state[c_owner[c_last]] = values[change][c_last]
        runs.since[c_owner[c_last]] = c_time[c_last]

    # ---- registry growth ----------------------------------------------------

    def _grow(self) -> None:
        """Members and domains registered since the last look start as the engine's do."""
        n_m, n_d = self.registry.n_members, self.registry.n_domains
        old_m = self._mstate.shape[0]
        if n_d > self._dcount.shape[0]:
            extra = np.zeros((n_d - self._dcount.shape[0], 4), np.int64)
            self._dcount = np.concatenate([self._dcount, extra])
        self._domains.grow(n_d, self._now)
        if n_m <= old_m:
            return
        self._mdom = np.ascontiguousarray(self.registry.member_domains(), dtype=np.int32)
        states = np.full(n_m - old_m, _UNSEEN, np.int8)
        for m, s in self._initial.items():
            if old_m <= m < n_m:
                states[m - old_m] = int(s)
        if self._resolution is not None and self._epoch == 0:
            table = self._resolution.states
            k = min(n_m, table.shape[1])
            if k > old_m:
                row = table[0, old_m:k]
                states[: k - old_m][row >= 0] = row[row >= 0]
        self._mstate = np.concatenate([self._mstate, states])
        self._members.grow(n_m, self._now)
        cats = _CATEGORY[states]
        new_members = np.arange(old_m, n_m)
        np.add.at(self._dcount, (self._mdom[new_members][cats >= 0], cats[cats >= 0]), 1)
        # members known from the start are in their state from there (or from now)
        mvalues = np.where((states == _ABSENT) | (states == _UNSEEN), np.int8(NO_STATE),
                           np.where(states == _UNKNOWN, np.int8(MEMBER_LOST), states))
        self._members.state[old_m:] = mvalues.astype(np.int8)
        touched = np.unique(self._mdom[new_members])
        was = self._domains.state[touched]
        self._domains.state[touched] = _classify(self._dcount[touched],
                                                 np.full(touched.size, self._depth, np.int64))
        self._domains.since[touched] = np.where(was == NO_STATE, self._now,
                                                self._domains.since[touched])


def _last_of_instant(owner: npt.NDArray[np.int32], t: I64) -> npt.NDArray[np.bool_]:
    """Rows (sorted by owner, then time) that are an owner's last at their instant."""
    last = np.ones(owner.shape[0], bool)
    last[:-1] = (owner[1:] != owner[:-1]) | (t[1:] != t[:-1])
    return last


def _classify(counts: npt.NDArray[np.int64], depth: I64) -> I8:
    """Domain state codes from category counts (running, runnable, blocked, unknown)."""
    mask = (counts[:, 0] > 0) | (counts[:, 1] > 0) << 1 | (counts[:, 2] > 0) << 2
    state = _BY_MASK[mask.astype(np.intp)]
    alive = counts.sum(axis=1) > 0
    lost = alive & ((depth > 0) | (counts[:, 3] > 0))
    return np.where(lost, np.int8(_DOMAIN_LOST), state).astype(np.int8)


def _owned(batch: EventBatch) -> EventBatch:
    """A copy, so a held-back tail does not pin (or see changes to) a reader's buffer."""
    return EventBatch(batch.time.copy(), batch.member.copy(), batch.old_state.copy(),
                      batch.new_state.copy())
