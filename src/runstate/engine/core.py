"""The streaming engine: feed time-sorted event batches, take snapshots at any moment.

State lives in numpy arrays (one row per member and per domain); the per-event
loop is the C kernel ``_kernel``.  Memory is proportional to the number of
members and domains, never to the number of events.  A live source calls
:meth:`Engine.feed` as events arrive and :meth:`Engine.snapshot` whenever it
wants figures; an offline run calls :meth:`Engine.finish` once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from runstate._abi import check_constants, check_kernel
from runstate.engine import _kernel
from runstate.engine.histogram import bucket_of, percentiles
from runstate.engine.resolve import Resolution
from runstate.engine.results import (
    DomainResult,
    IntervalResult,
    MemberResult,
    RunResult,
    StateStats,
)
from runstate.errors import UsageError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import (
    LOSS_BEGIN,
    LOSS_END,
    MEMBER_BUCKETS,
    DomainState,
    MemberState,
)

# The kernel defines the array layout; the codes it shares with the model are
# compared with the model's enums at import, so a stale build cannot misread them.
check_kernel(_kernel)
check_constants(_kernel, {
    **{state.name: int(state) for state in MemberState},
    "D_LOST": int(DomainState.LOST), "N_DSTATES": len(DomainState),
    "N_MBUCKETS": len(MEMBER_BUCKETS), "M_LOST": MEMBER_BUCKETS.index("lost"),
    "LOSS_BEGIN": LOSS_BEGIN, "LOSS_END": LOSS_END,
})

N_STATES = len(DomainState)
_DOMAIN_STATES = tuple(DomainState)
_QUANTILES = (0.50, 0.95, 0.99)
N_BUCKETS = _kernel.N_BUCKETS
#: ``ep_state`` of a domain outside any episode
_NO_STATE = _kernel.D_NONE
_CATEGORY = (0, 1, 2, 2, -1, 3, -1)

# indices into the globals array
G_DEPTH, G_EPOCH, G_EPOCH_START = _kernel.G_DEPTH, _kernel.G_EPOCH, _kernel.G_EPOCH_START
G_WINDOW_START, G_MISMATCH = _kernel.G_WINDOW_START, _kernel.G_MISMATCH
G_NO_CHANGE, G_LATE, G_UNBALANCED = _kernel.G_NO_CHANGE, _kernel.G_LATE, _kernel.G_UNBALANCED
G_IN_LOSS, G_LAST_TIME = _kernel.G_IN_LOSS_EVENTS, _kernel.G_LAST_TIME

IntervalSink = Callable[[IntervalResult], None]
#: receives ``count`` consecutive intervals at once: ``first`` and ``count - 1`` more of the
#: same length right after it, each with exactly ``first``'s figures (a quiet stretch)
IntervalRunSink = Callable[[IntervalResult, int], None]


class _State:
    """The arrays the kernel works on, grown as the registry grows."""

    def __init__(self) -> None:
        self.mdom = np.zeros(0, np.int32)
        self.mstate = np.zeros(0, np.int8)
        self.msince = np.zeros(0, np.int64)
        self.mns = np.zeros((0, len(MEMBER_BUCKETS)), np.int64)
        self.dcount = np.zeros((0, 4), np.int32)
        self.dlast = np.zeros(0, np.int64)
        self.dns = np.zeros((0, N_STATES), np.int64)
        self.ep_state = np.zeros(0, np.int8)
        self.ep_len = np.zeros(0, np.int64)
        self.ep_count = np.zeros((0, N_STATES), np.int64)
        self.ep_max = np.zeros((0, N_STATES), np.int64)
        self.ep_hist = np.zeros((0, N_STATES, N_BUCKETS), np.uint32)
        self.g = np.zeros(_kernel.N_GLOBALS, np.int64)

    def as_tuple(self) -> tuple[npt.NDArray[np.generic], ...]:
        return (self.mdom, self.mstate, self.msince, self.mns, self.dcount, self.dlast,
                self.dns, self.ep_state, self.ep_len, self.ep_count, self.ep_max,
                self.ep_hist, self.g)

    def grow(self, registry: Registry, now: int) -> None:
        n_m, n_d = registry.n_members, registry.n_domains
        old_m, old_d = self.mdom.shape[0], self.dlast.shape[0]
        if n_d > old_d:
            self.dcount = _extend(self.dcount, n_d, 0)
            self.dlast = _extend(self.dlast, n_d, now)
            self.dns = _extend(self.dns, n_d, 0)
            self.ep_state = _extend(self.ep_state, n_d, _NO_STATE)
            self.ep_len = _extend(self.ep_len, n_d, 0)
            self.ep_count = _extend(self.ep_count, n_d, 0)
            self.ep_max = _extend(self.ep_max, n_d, 0)
            self.ep_hist = _extend(self.ep_hist, n_d, 0)
        if n_m > old_m:
            self.mdom = np.ascontiguousarray(registry.member_domains())
            self.mstate = _extend(self.mstate, n_m, int(MemberState.UNSEEN))
            self.msince = _extend(self.msince, n_m, now)
            self.mns = _extend(self.mns, n_m, 0)

    def set_states(self, members: npt.NDArray[np.intp], states: npt.NDArray[np.int8]) -> None:
        """Put members into known states (before any of their events)."""
        for m, s in zip(members.tolist(), states.tolist(), strict=True):
            before = _CATEGORY[int(self.mstate[m])]
            if before >= 0:
                self.dcount[self.mdom[m], before] -= 1
            after = _CATEGORY[s]
            if after >= 0:
                self.dcount[self.mdom[m], after] += 1
            self.mstate[m] = s


_T = TypeVar("_T", bound=np.generic)


def _extend(a: npt.NDArray[_T], n: int, fill: int) -> npt.NDArray[_T]:
    # zeros come from calloc: pages of the episode histograms (most buckets of most
    # domains stay empty) then cost no memory until a length lands in them
    shape = (n, *a.shape[1:])
    out = np.zeros(shape, dtype=a.dtype) if fill == 0 else np.full(shape, fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


class Engine:
    """Exact domain runstate accounting over a stream of member state changes.

    Every time it takes or gives is in ticks, the unit of the batches' ``time``
    (ns, or TSC cycles for Xen); reports and live records convert them to ns.

    Args:
        registry: the members and domains the batches refer to (may grow while
            feeding, as a one-pass source meets new members).
        start_ticks: window start; defaults to the first event's time.
        interval_ticks: if set, also account fixed intervals of this length from
            ``start_ticks`` and hand each finished one to ``on_interval``.
        resolution: initial states from a first pass (exact mode); without it
            the run is one-pass: a member counts from its first record.
        initial: known initial member states (e.g. from /proc at record start),
            applied where the resolution says nothing.
        on_interval: called with each finished interval; by default intervals
            are kept and returned by :meth:`finish`.
        on_interval_run: if given, receives every finished interval instead of
            ``on_interval``, a stretch of intervals in which no event happened
            as one call (its figures repeat, so they are computed once).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        start_ticks: int | None = None,
        interval_ticks: int | None = None,
        resolution: Resolution | None = None,
        initial: dict[int, MemberState] | None = None,
        on_interval: IntervalSink | None = None,
        on_interval_run: IntervalRunSink | None = None,
    ) -> None:
        if interval_ticks is not None and interval_ticks <= 0:
            raise UsageError("the interval must be a positive duration")
        self.registry = registry
        self.resolution = resolution
        self._initial = dict(initial or {})
        self._interval_ticks = interval_ticks
        self._intervals: list[IntervalResult] = []
        self._on_interval = on_interval or self._intervals.append
        self._on_interval_run = on_interval_run
        self._s = _State()
        self._start: int | None = None
        self._next_boundary: int | None = None
        self._interval_base = np.zeros((0, N_STATES), np.int64)
        self._resolve_flat: npt.NDArray[np.int8] | None = None
        if start_ticks is not None:
            self._begin(start_ticks)

    # ---- feeding ----------------------------------------------------------

    @property
    def start_ticks(self) -> int | None:
        return self._start

    @property
    def last_time_ticks(self) -> int | None:
        """Time of the latest event fed (None before the first)."""
        return None if self._start is None else int(self._s.g[G_LAST_TIME])

    def member_states(self) -> npt.NDArray[np.int8]:
        """Each member's :class:`MemberState` code now, by member index (a copy).

        Live views show what each member is doing at a snapshot; a copy, so the
        caller can keep it while the engine goes on.
        """
        return self._s.mstate.copy()

    def feed(self, batch: EventBatch) -> None:
        """Account a time-sorted batch (its rows must not precede earlier batches)."""
        if len(batch) == 0:
            return
        if self._start is None:
            self._begin(int(batch.time[0]))
        self._grow()
        if self._next_boundary is None:
            self._run(batch)
            return
        times = batch.time
        pos = 0
        while pos < len(batch):
            cut = int(np.searchsorted(times, self._next_boundary, side="left"))
            if cut >= len(batch):
                self._run(batch.slice(pos, len(batch)))
                return
            self._run(batch.slice(pos, cut))
            self._cross_boundaries(int(times[cut]))
            pos = max(pos, cut)

    def adopt(self, fill: Callable[[tuple[npt.NDArray[np.generic], ...]], bool]) -> bool:
        """Let ``fill`` put the state arrays where feeding a whole stream of rows
        would: a reader's C code that accounted its rows by the kernel's own rules as
        it merged them (``kernel_core.h``; sources.xentrace's fast path), sparing the
        rows the trip through Python.  ``fill`` gets the arrays, checks that they hold
        the state it started from, and returns whether it filled them; so does this.
        Not with intervals: those are cut as rows are fed."""
        if self._start is None or self._next_boundary is not None:
            return False
        self._grow()
        return bool(fill(self._s.as_tuple()))

    def _begin(self, start_ticks: int) -> None:
        self._start = start_ticks
        self._s.g[G_WINDOW_START] = start_ticks
        self._s.g[G_EPOCH_START] = start_ticks
        self._s.g[G_LAST_TIME] = start_ticks
        if self._interval_ticks is not None:
            self._next_boundary = start_ticks + self._interval_ticks
        self._grow()

    def _grow(self) -> None:
        old_m = self._s.mdom.shape[0]
        old_d = self._s.dlast.shape[0]
        now = int(self._s.g[G_LAST_TIME])
        self._s.grow(self.registry, now)
        if self._s.dlast.shape[0] > old_d:
            self._interval_base = _extend(self._interval_base, self.registry.n_domains, 0)
        if self._s.mdom.shape[0] > old_m:
            self._apply_initial(old_m)

    def _apply_initial(self, first_new: int) -> None:
        n = self.registry.n_members
        states = np.full(n - first_new, -1, np.int8)
        for m, s in self._initial.items():
            if m >= first_new and m < n:
                states[m - first_new] = int(s)
        if self.resolution is not None and int(self._s.g[G_EPOCH]) == 0:
            table = self.resolution.states
            k = min(n, table.shape[1])
            if k > first_new:
                row = table[0, first_new:k]
                known = row >= 0
                states[: k - first_new][known] = row[known]
            self._resolve_flat = None
        members = np.flatnonzero(states >= 0) + first_new
        self._s.set_states(members, states[states >= 0])

    def _resolve_table(self) -> npt.NDArray[np.int8] | None:
        if self.resolution is None:
            return None
        if self._resolve_flat is None or self._resolve_flat.size != (
            self.resolution.states.shape[0] * self.registry.n_members
        ):
            table = np.full((self.resolution.states.shape[0], self.registry.n_members), -1,
                            np.int8)
            k = min(self.registry.n_members, self.resolution.states.shape[1])
            table[:, :k] = self.resolution.states[:, :k]
            self._resolve_flat = np.ascontiguousarray(table.reshape(-1))
        return self._resolve_flat

    def _run(self, batch: EventBatch) -> None:
        if len(batch) == 0:
            return
        # rows before the window start count as at the start (the kernel clamps them)
        first = max(int(batch.time[0]), int(self._s.g[G_WINDOW_START]))
        if first < int(self._s.g[G_LAST_TIME]):
            raise UsageError(
                f"events go back in time: {first} ns after "
                f"{int(self._s.g[G_LAST_TIME])} ns"
            )
        try:
            _kernel.feed(self._s.as_tuple(), batch.time, batch.member, batch.old_state,
                         batch.new_state, self._resolve_table())
        except ValueError as exc:  # rows out of order or bad state codes: a caller's bug
            raise UsageError(str(exc)) from None

    def _cross_boundary(self) -> None:
        assert self._next_boundary is not None and self._interval_ticks is not None
        boundary = self._next_boundary
        self._close(boundary)
        self._emit_interval(boundary - self._interval_ticks, boundary)
        self._next_boundary = boundary + self._interval_ticks

    def _cross_boundaries(self, t: int) -> None:
        """Cross every interval boundary at or before ``t``; no event lies between them.

        The first interval holds the events fed so far.  The ones after it up to
        ``t`` are quiet: every domain stays in one state, so their figures are
        equal and one kernel call accounts them all, whatever their number.
        """
        assert self._next_boundary is not None and self._interval_ticks is not None
        self._cross_boundary()
        if t >= self._next_boundary:
            self._quiet_run((t - self._next_boundary) // self._interval_ticks + 1)

    def _quiet_run(self, count: int) -> None:
        assert self._next_boundary is not None and self._interval_ticks is not None
        step = self._interval_ticks
        begin = self._next_boundary - step
        end = begin + count * step
        self._close(end)
        total = self._s.dns - self._interval_base
        self._interval_base = self._s.dns.copy()
        each = total // count
        assert bool((each * count == total).all()), "a quiet interval changed state"
        self._emit(IntervalResult(begin, begin + step, self._alive(each)), count)
        self._next_boundary = end + step

    def _close(self, t: int) -> None:
        _kernel.close_all(self._s.as_tuple(), t)
        if t > int(self._s.g[G_LAST_TIME]):
            self._s.g[G_LAST_TIME] = t

    def _emit_interval(self, start: int, end: int) -> None:
        delta = self._s.dns - self._interval_base
        self._interval_base = self._s.dns.copy()
        self._emit(IntervalResult(start, end, self._alive(delta)), 1)

    def _alive(self, delta: npt.NDArray[np.int64]) -> dict[str, dict[DomainState, int]]:
        """Time per state of the domains that lived in the interval."""
        alive = np.flatnonzero(delta.sum(axis=1) > 0)
        # plain-int rows and zip: iterating the enum per domain cost ~3 ms per interval
        return {
            self.registry.domains[d].key: dict(zip(_DOMAIN_STATES, row, strict=True))
            for d, row in zip(alive.tolist(), delta[alive].tolist(), strict=True)
        }

    def _emit(self, first: IntervalResult, count: int) -> None:
        if self._on_interval_run is not None:
            self._on_interval_run(first, count)
            return
        step = first.end_ticks - first.start_ticks
        for k in range(count):
            # the repeats share one figures dict: it is never changed after this
            self._on_interval(first if k == 0 else IntervalResult(
                first.start_ticks + k * step, first.end_ticks + k * step, first.domains))

    # ---- results ----------------------------------------------------------

    def advance(self, t_ticks: int) -> None:
        """Move the clock to ``t_ticks`` with no event (live sources between events)."""
        if self._start is None:
            self._begin(t_ticks)
        self._grow()
        if self._next_boundary is not None and self._next_boundary <= t_ticks:
            self._cross_boundaries(t_ticks)
        self._close(t_ticks)

    def snapshot(self, t_ticks: int | None = None) -> RunResult:
        """Figures up to ``t_ticks`` (default: the last event), current partial state included."""
        t = self._advance_for_snapshot(t_ticks)
        return self._result(t, tuple(self._intervals))

    def _advance_for_snapshot(self, t_ticks: int | None) -> int:
        """Every open stay carried up to ``t_ticks`` (default: the last event): the
        moment a snapshot is taken at."""
        if self._start is None:
            raise UsageError("no events yet")
        t = int(self._s.g[G_LAST_TIME]) if t_ticks is None else t_ticks
        self._check_not_before_last(t, "snapshot")
        self.advance(t)
        return t

    def live_totals(self, t_ticks: int | None = None, with_members: bool = False
                    ) -> LiveTotals:
        """Each domain's running totals up to ``t_ticks`` (default: the last event), as
        columns: what a live view shows of a domain, and no more (``with_members``:
        each member's ticks too).

        :meth:`snapshot` also works out every domain's episode percentiles and a
        record per member and state; a view that refreshes thousands of domains
        every second shows none of that, and computing it was most of its cost.
        """
        t = self._advance_for_snapshot(t_ticks)
        assert self._start is not None  # there were events
        s = self._s
        in_episode = s.ep_state != _NO_STATE
        lost_now = s.ep_state == int(DomainState.LOST)
        n_domains = s.dlast.shape[0]
        member_sums = np.zeros((n_domains, len(MEMBER_BUCKETS)), np.int64)
        np.add.at(member_sums, s.mdom, s.mns)
        existing = (s.mstate != int(MemberState.ABSENT)) & (s.mstate != int(MemberState.UNSEEN))
        return LiveTotals(
            start_ticks=self._start, end_ticks=t, ticks=s.dns.copy(),
            members_now=np.bincount(s.mdom[existing], minlength=n_domains).astype(np.int64),
            state=np.where(in_episode, s.ep_state, -1).astype(np.int8),
            entered_ticks=np.where(in_episode, s.dlast - s.ep_len, 0),
            changes=s.ep_count.sum(axis=1) + in_episode,
            lost_intervals=s.ep_count[:, int(DomainState.LOST)] + lost_now,
            member_sum_ticks=member_sums, member_states=self.member_states(),
            member_ticks=s.mns.copy() if with_members else None)

    def finish(self, end_ticks: int | None = None) -> RunResult:
        """Close the window at ``end_ticks`` (default: the last event) and return the result."""
        if self._start is None:
            raise UsageError("no events to analyse")
        end = int(self._s.g[G_LAST_TIME]) if end_ticks is None else end_ticks
        self._check_not_before_last(end, "window end")
        self.advance(end)
        if self._next_boundary is not None and self._interval_ticks is not None:
            begin = self._next_boundary - self._interval_ticks
            if end > begin:
                self._emit_interval(begin, end)
                self._next_boundary = None
        return self._result(end, tuple(self._intervals))

    def _check_not_before_last(self, t: int, what: str) -> None:
        """Figures up to ``t`` cannot be given once time past ``t`` has been accounted."""
        last = int(self._s.g[G_LAST_TIME])
        if t < last:
            raise UsageError(f"{what} {t} ns is before the last event or snapshot ({last} ns)"
                             if t >= int(self._s.g[G_WINDOW_START]) else
                             f"{what} {t} ns is before the window start "
                             f"({int(self._s.g[G_WINDOW_START])} ns)")

    def anomalies(self) -> dict[str, int]:
        g = self._s.g
        return {
            "old_state_mismatch": int(g[G_MISMATCH]),
            "no_change_events": int(g[G_NO_CHANGE]),
            "members_revealed_late": int(g[G_LATE]),
            "unbalanced_loss_markers": int(g[G_UNBALANCED]),
            "events_in_loss_windows": int(g[G_IN_LOSS]),
        }

    def _result(self, t: int, intervals: tuple[IntervalResult, ...]) -> RunResult:
        assert self._start is not None
        s = self._s
        count, maxes, open_bucket = self._episodes_with_open()
        seen = ((s.mns.sum(axis=1) > 0) | (s.mstate < int(MemberState.ABSENT))).tolist()
        by_domain: list[list[int]] = [[] for _ in range(self.registry.n_domains)]
        for m, info in enumerate(self.registry.members):
            by_domain[info.domain].append(m)
        # plain Python rows once, not numpy scalars per field: a snapshot of 1000 domains
        # and 30 k members is then a few tens of ms
        tables = _Tables(s.dns.tolist(), count.tolist(), maxes.tolist(), s.mns.tolist(), seen)
        domains = tuple(
            self._domain_result(d, tables, open_bucket.get(d), by_domain[d])
            for d in range(self.registry.n_domains)
        )
        return RunResult(
            start_ticks=self._start,
            end_ticks=t,
            domains=domains,
            intervals=intervals,
            anomalies=self.anomalies(),
            provisional=self.resolution is None,
        )

    def _episodes_with_open(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], dict[int, tuple[int, int]]]:
        """Episode counts and maxima including each domain's still-open episode.

        The open episode's histogram bucket is returned as ``{domain: (state, bucket)}``
        rather than added to a copy of the histograms, which would double their memory.
        """
        s = self._s
        count, maxes = s.ep_count.copy(), s.ep_max.copy()
        open_bucket = {}
        for d in np.flatnonzero(s.ep_state != _NO_STATE).tolist():
            st, length = int(s.ep_state[d]), int(s.ep_len[d])
            count[d, st] += 1
            maxes[d, st] = max(int(maxes[d, st]), length)
            open_bucket[d] = (st, bucket_of(length, N_BUCKETS))
        return count, maxes, open_bucket

    def _domain_result(
        self, d: int, tables: _Tables, open_bucket: tuple[int, int] | None, members: list[int]
    ) -> DomainResult:
        s = self._s
        info = self.registry.domains[d]
        dns, count, maxes = tables.dns[d], tables.count[d], tables.maxes[d]
        states = {}
        for st in _DOMAIN_STATES:
            hist = s.ep_hist[d, st]
            if open_bucket is not None and open_bucket[0] == st:
                hist = hist.copy()
                hist[open_bucket[1]] += 1
            p50, p95, p99 = percentiles(hist, _QUANTILES, maxes[st])
            states[st] = StateStats(ticks=dns[st], count=count[st], p50_ticks=p50,
                                    p95_ticks=p95, p99_ticks=p99, max_ticks=maxes[st])
        ep = int(s.ep_state[d])
        current = None if ep == _NO_STATE else DomainState(ep)
        entered = None if current is None else int(s.dlast[d] - s.ep_len[d])
        registered = self.registry.members
        return DomainResult(
            index=d,
            key=info.key,
            name=info.name,
            lifetime_ticks=sum(dns),
            states=states,
            current_state=current,
            entered_ticks=entered,
            changes=sum(count),
            lost_intervals=count[DomainState.LOST],
            members_seen=sum(1 for m in members if tables.seen[m]),
            members_expected=info.expected_members,
            members=tuple(
                MemberResult(key=registered[m].key, name=registered[m].name,
                             ticks=dict(zip(MEMBER_BUCKETS, tables.mns[m], strict=True)))
                for m in members
            ),
            tags=dict(info.tags),
        )


@dataclass(frozen=True, slots=True)
class LiveTotals:
    """:meth:`Engine.live_totals`: one row per domain (by index), ticks throughout."""

    start_ticks: int
    end_ticks: int
    #: ticks per DomainState, the current stay included
    ticks: npt.NDArray[np.int64]
    #: members that exist now (neither gone nor waiting for their first record)
    members_now: npt.NDArray[np.int64]
    #: the current DomainState, -1 while the domain has no member that counts
    state: npt.NDArray[np.int8]
    #: when the current state was entered (0 where there is none)
    entered_ticks: npt.NDArray[np.int64]
    #: state changes (episodes begun) and lost episodes, the current one included
    changes: npt.NDArray[np.int64]
    lost_intervals: npt.NDArray[np.int64]
    #: ticks summed over each domain's members, per MEMBER_BUCKETS
    member_sum_ticks: npt.NDArray[np.int64]
    #: each member's MemberState code, by member index
    member_states: npt.NDArray[np.int8]
    #: each member's ticks per MEMBER_BUCKETS, by member index (when asked for)
    member_ticks: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True, slots=True)
class _Tables:
    """The engine's arrays as Python lists, converted once per result."""

    dns: list[list[int]]
    count: list[list[int]]
    maxes: list[list[int]]
    mns: list[list[int]]
    seen: list[bool]
