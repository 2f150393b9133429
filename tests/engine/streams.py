"""Random event streams, an in-memory source and result comparison for the engine tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from runstate.engine.results import RunResult
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import SourceInfo
from tests.conservation import assert_lifetimes
from tests.reference import Row


def batch_of(rows: Sequence[Row]) -> EventBatch:
    return EventBatch.from_columns(
        [r.time for r in rows], [r.member for r in rows],
        [r.old for r in rows], [r.new for r in rows])


@dataclass
class MemorySource:
    """A re-readable source over a list of rows, cut into batches at ``cuts``."""

    registry: Registry
    rows: list[Row]
    cuts: list[int] = field(default_factory=list)
    initial: dict[int, MemberState] = field(default_factory=dict)
    rereadable: bool = True
    info: SourceInfo = field(init=False)

    def __post_init__(self) -> None:
        self.info = SourceInfo(format="memory", path="<memory>",
                               initial_states=dict(self.initial))

    def batches(self) -> Iterator[EventBatch]:
        bounds = [0, *sorted(c for c in self.cuts if 0 < c < len(self.rows)), len(self.rows)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if hi > lo:
                yield batch_of(self.rows[lo:hi])


@dataclass
class Stream:
    """A random test case: members, rows, a window and options."""

    registry: Registry
    rows: list[Row]
    start: int | None
    end: int | None
    interval: int | None
    initial: dict[int, MemberState]
    cuts: list[int]

    @property
    def window_start(self) -> int:
        return self.start if self.start is not None else self.rows[0].time

    def source(self, cuts: list[int] | None = None) -> MemorySource:
        return MemorySource(self.registry, self.rows, self.cuts if cuts is None else cuts,
                            self.initial)


_STEP = st.tuples(
    st.one_of(st.just(0), st.integers(1, 20), st.integers(1, 5000)),  # time step
    st.integers(0, 24),   # kind: 0 loss begin, 1 loss end, else a member row
    st.integers(0, 63),   # member (mod the member count)
    st.integers(0, 4),    # new state
    st.integers(0, 14),   # 0: a wrong old state
    st.integers(0, 4),    # the wrong old state
)


@st.composite
def streams(draw: st.DrawFn, max_rows: int = 80) -> Stream:
    """Valid-ish streams: mostly consistent old states, some not; creations, exits, losses."""
    sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=6))
    registry = Registry()
    for d, k in enumerate(sizes):
        registry.domain(f"vm{d}", f"guest-{d}")
        for j in range(k):
            registry.member(f"vm{d}", f"v{j}", f"vcpu{j}")
    registry.domains[0].expected_members = sizes[0] + 1
    registry.domains[-1].tags["kind"] = "test"
    n = registry.n_members
    truth = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    steps = draw(st.lists(_STEP, min_size=1, max_size=max_rows))
    t = draw(st.integers(0, 1000))
    rows = []
    for dt, kind, member, new, wrong, bad_old in steps:
        t += dt
        if kind == 0:
            rows.append(Row(t, -1, 0, LOSS_BEGIN))
        elif kind == 1:
            rows.append(Row(t, -1, 0, LOSS_END))
        else:
            m = member % n
            old = bad_old if wrong == 0 else truth[m]
            truth[m] = new
            rows.append(Row(t, m, old, new))
    first, last = rows[0].time, rows[-1].time
    span = last - first
    start = draw(st.none() | st.integers(first - 50, last + 50))
    s = first if start is None else start
    end = draw(st.none() | st.integers(max(s, first - 10), max(s, last) + 100))
    interval = draw(st.none() | st.integers(1, span + 20))
    initial = draw(st.dictionaries(st.integers(0, n - 1),
                                   st.sampled_from([MemberState(i) for i in range(5)]),
                                   max_size=3))
    cuts = draw(st.lists(st.integers(1, max(1, len(rows) - 1)), max_size=6))
    return Stream(registry, rows, start, end, interval, initial, cuts)


def without_percentiles(result: RunResult) -> dict[str, object]:
    """Every field of a result as plain data, with the approximate percentiles blanked."""
    data = dataclasses.asdict(result)
    for domain in data["domains"]:
        for stats in domain["states"].values():
            for key in ("p50_ticks", "p95_ticks", "p99_ticks"):
                stats[key] = None
    return data


def assert_matches(engine: RunResult, reference: RunResult) -> None:
    """Equal in every field; percentiles within the histogram's 1.6 % and never above max."""
    assert without_percentiles(engine) == without_percentiles(reference)
    for got, want in zip(engine.domains, reference.domains, strict=True):
        for state, stats in got.states.items():
            exact = want.states[state]
            for key in ("p50_ticks", "p95_ticks", "p99_ticks"):
                value, truth = getattr(stats, key), getattr(exact, key)
                assert value <= stats.max_ticks, (got.key, state, key)
                assert abs(value - truth) <= 0.016 * truth, (got.key, state, key, value, truth)


def assert_conserved(result: RunResult) -> None:
    """Lifetimes against the members' own times (``tests.conservation``); intervals
    must tile the window and add up, state by state, to the totals (two separate
    accumulations)."""
    assert_lifetimes(result)
    totals = {d.key: d for d in result.domains}
    summed: dict[str, np.ndarray] = {d.key: np.zeros(7, np.int64) for d in result.domains}
    for iv in result.intervals:
        assert iv.start_ticks < iv.end_ticks
        for key, per_state in iv.domains.items():
            values = list(per_state.values())
            assert min(values) >= 0
            assert 0 < sum(values) <= iv.end_ticks - iv.start_ticks
            summed[key] += np.array(values, np.int64)
    if result.intervals:
        assert result.intervals[0].start_ticks == result.start_ticks
        assert result.intervals[-1].end_ticks == result.end_ticks
        for a, b in zip(result.intervals, result.intervals[1:], strict=False):
            assert a.end_ticks == b.start_ticks
        for key, domain in totals.items():
            assert summed[key].tolist() == [s.ticks for s in domain.states.values()]


@dataclass
class GrowingSource:
    """Registers members as its rows meet them, like a reader does (indices by first use)."""

    stream: Stream
    rereadable: bool = True
    registry: Registry = field(default_factory=Registry)
    info: SourceInfo = field(default_factory=lambda: SourceInfo(format="memory", path="<memory>"))

    def _index(self, m: int) -> int:
        info = self.stream.registry.members[m]
        domain = self.stream.registry.domains[info.domain]
        index = self.registry.member(domain.key, info.key, info.name)
        self.registry.domains[self.registry.find_domain(domain.key) or 0].name = domain.name
        return index

    def mapped_rows(self, end: int | None = None) -> list[Row]:
        """The rows in this source's indices (rows after ``end`` are left out: a one-pass
        run stops reading there, so their members may not be registered)."""
        return [r if r.member < 0 else Row(r.time, self._index(r.member), r.old, r.new)
                for r in self.stream.rows if end is None or r.time <= end]

    def batches(self) -> Iterator[EventBatch]:
        rows = self.stream.rows
        bounds = [0, *sorted(c for c in self.stream.cuts if 0 < c < len(rows)), len(rows)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if hi > lo:
                yield batch_of([r if r.member < 0 else Row(r.time, self._index(r.member),
                                                           r.old, r.new)
                                for r in rows[lo:hi]])
