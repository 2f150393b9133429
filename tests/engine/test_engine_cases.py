"""Hand-computed cases: each timeline is worked out in the comments, figure by figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from runstate.analysis.pipeline import Window, analyze
from runstate.engine import Engine, RunResult, StateStats
from runstate.errors import UsageError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END
from runstate.model.states import DomainState as D
from runstate.model.states import MemberState as M
from tests.engine.streams import MemorySource, assert_conserved
from tests.reference import Row, run_reference

R, RN, B, OFF, ABS = M.RUNNING, M.RUNNABLE, M.BLOCKED, M.OFFLINE, M.ABSENT


def _source(members: list[tuple[str, str]],
            rows: Sequence[tuple[int, int, int, int]]) -> MemorySource:
    registry = Registry()
    for domain, member in members:
        registry.member(domain, member)
    return MemorySource(registry, [Row(*r) for r in rows])


def _ns(result: RunResult, key: str) -> dict[D, int]:
    domain = next(d for d in result.domains if d.key == key)
    return {s: st.ticks for s, st in domain.states.items() if st.ticks}


# Two vCPUs a (0) and b (1) of vm x; a starts running, b runnable.
#   [0,10)  a run,      b runnable -> concurrency_hazard 10
#   [10,20) a blocked,  b runnable -> partial_contention 10
#   [20,30) a blocked,  b run      -> partial_run 10
#   [30,50) a runnable, b runnable -> full_contention 20  (both change at 30)
#   [50,70) a run,      b runnable -> concurrency_hazard 20
#   [70,100) both blocked          -> blocked 30          (both change at 70)
SWITCHES = [
    (10, 0, R, B), (20, 1, RN, R), (30, 0, B, RN), (30, 1, R, RN),
    (50, 0, RN, R), (70, 1, RN, B), (70, 0, R, B),
]


def test_two_vcpus_exact() -> None:
    result = analyze(_source([("x", "a"), ("x", "b")], SWITCHES), Window(0, 100, 40))
    (x,) = result.domains
    assert _ns(result, "x") == {D.CONCURRENCY_HAZARD: 30, D.PARTIAL_CONTENTION: 10,
                                D.PARTIAL_RUN: 10, D.FULL_CONTENTION: 20, D.BLOCKED: 30}
    assert x.lifetime_ticks == 100
    assert x.changes == 6 and x.lost_intervals == 0
    assert (x.current_state, x.entered_ticks) == (D.BLOCKED, 70)
    hazard = x.states[D.CONCURRENCY_HAZARD]
    assert (hazard.count, hazard.p50_ticks, hazard.p95_ticks, hazard.max_ticks) == (2, 10, 20, 20)
    assert [m.ticks for m in x.members] == [
        {"running": 30, "runnable": 20, "blocked": 50, "offline": 0, "lost": 0},
        {"running": 10, "runnable": 60, "blocked": 30, "offline": 0, "lost": 0},
    ]
    # intervals of 40: [0,40) [40,80) [80,100)
    assert [(iv.start_ticks, iv.end_ticks) for iv in result.intervals] == [(0, 40), (40, 80),
                                                                     (80, 100)]
    assert [{s: v for s, v in iv.domains["x"].items() if v} for iv in result.intervals] == [
        {D.CONCURRENCY_HAZARD: 10, D.PARTIAL_CONTENTION: 10, D.PARTIAL_RUN: 10,
         D.FULL_CONTENTION: 10},
        {D.FULL_CONTENTION: 10, D.CONCURRENCY_HAZARD: 20, D.BLOCKED: 10},
        {D.BLOCKED: 20},
    ]
    assert sum(result.anomalies.values()) == 0
    assert_conserved(result)


def test_two_vcpus_one_pass_counts_members_late_but_not_the_domain_past() -> None:
    # a is unseen until 10, b until 20: the domain lives from 10 (a blocked alone:
    # blocked 10), the members get their early time when they show up.
    result = analyze(_source([("x", "a"), ("x", "b")], SWITCHES), Window(0, 100), one_pass=True)
    (x,) = result.domains
    assert _ns(result, "x") == {D.BLOCKED: 40, D.PARTIAL_RUN: 10, D.FULL_CONTENTION: 20,
                                D.CONCURRENCY_HAZARD: 20}
    assert x.lifetime_ticks == 90
    assert x.members[0].ticks["running"] == 30 and x.members[1].ticks["runnable"] == 60
    assert result.anomalies["members_revealed_late"] == 2
    assert result.provisional


def test_window_start_after_first_rows() -> None:
    # rows at 10 and 20 count as at 25: from 25, a blocked and b running.
    #   [25,30) partial_run 5, [30,50) full_contention 20, [50,60) hazard 10
    result = analyze(_source([("x", "a"), ("x", "b")], SWITCHES), Window(25, 60))
    assert _ns(result, "x") == {D.PARTIAL_RUN: 5, D.FULL_CONTENTION: 20,
                                D.CONCURRENCY_HAZARD: 10}
    assert result.domains[0].lifetime_ticks == 35


# vm x: a (0), b (1).  Lost data over [10, 20); a has no record after it, so it stays
# unknown and the domain stays lost to the end.
#   [0,10)  a blocked, b run -> partial_run 10
#   [10,20) loss             -> lost
#   [20,40) a unknown        -> lost (one episode [10,40) of 30)
LOSS = [
    (0, 0, R, B), (0, 1, B, R), (10, -1, 0, LOSS_BEGIN), (15, 0, B, RN),
    (20, -1, 0, LOSS_END), (30, 1, R, B), (40, 1, B, R),
]


@pytest.mark.parametrize("one_pass", [False, True])
def test_lost_window_and_unknown_member(one_pass: bool) -> None:
    result = analyze(_source([("x", "a"), ("x", "b")], LOSS), one_pass=one_pass)
    (x,) = result.domains
    assert (result.start_ticks, result.end_ticks) == (0, 40)
    assert _ns(result, "x") == {D.PARTIAL_RUN: 10, D.LOST: 30}
    assert (x.changes, x.lost_intervals, x.current_state, x.entered_ticks) == (2, 1, D.LOST, 10)
    assert x.states[D.LOST].max_ticks == 30
    assert x.members[0].ticks == {"running": 0, "runnable": 0, "blocked": 10, "offline": 0,
                               "lost": 30}
    # b: run [0,10), lost [10,20), run [20,30) (its record at 30 says so), blocked [30,40)
    assert x.members[1].ticks == {"running": 20, "runnable": 0, "blocked": 10, "offline": 0,
                               "lost": 10}
    assert result.anomalies["events_in_loss_windows"] == 1
    assert result.anomalies["old_state_mismatch"] == 0


def test_creation_offline_exit_and_recreation() -> None:
    # c is created at 100, goes offline at 150, exits at 170, comes back at 200:
    #   [100,150) full_run 50, [150,170) blocked 20 (offline counts as blocked),
    #   [170,200) not alive, [200,250) full_contention 50
    rows = [(100, 0, ABS, R), (150, 0, R, OFF), (170, 0, OFF, ABS), (200, 0, ABS, RN)]
    result = analyze(_source([("y", "c")], rows), Window(0, 250))
    (y,) = result.domains
    assert _ns(result, "y") == {D.FULL_RUN: 50, D.BLOCKED: 20, D.FULL_CONTENTION: 50}
    assert (y.lifetime_ticks, y.changes, y.current_state, y.entered_ticks) == (120, 3,
                                                                       D.FULL_CONTENTION, 200)
    assert y.members[0].ticks == {"running": 50, "runnable": 50, "blocked": 0, "offline": 20,
                               "lost": 0}


def test_exit_and_return_at_one_instant_is_one_episode() -> None:
    # a exits and b (same VM) is created at 10, both running: full_run all along.
    rows = [(0, 0, R, R), (10, 0, R, ABS), (10, 1, ABS, R), (20, 1, R, B)]
    result = analyze(_source([("x", "a"), ("x", "b")], rows), Window(0, 30))
    (x,) = result.domains
    assert x.states[D.FULL_RUN].count == 1 and x.states[D.FULL_RUN].ticks == 20
    assert x.changes == 2
    # (0, a, R, R) only asserts a's state: not an anomaly
    assert result.anomalies["no_change_events"] == 0


def test_long_episodes_keep_percentiles_close() -> None:
    # blocked episodes of 2^k ns up to 2^62: the histogram must cover every length
    lengths = [1 << k for k in range(20, 63, 6)]
    rows, t = [], 0
    for length in lengths:
        rows += [(t, 0, R, B), (t + length, 0, B, R)]
        t += length + 1
    result = analyze(_source([("x", "a")], rows))
    blocked = result.domains[0].states[D.BLOCKED]
    exact = run_reference(_source([("x", "a")], rows).registry, [Row(*r) for r in rows])
    want = exact.domains[0].states[D.BLOCKED]
    assert blocked.max_ticks == want.max_ticks == lengths[-1]
    for key in ("p50_ticks", "p95_ticks", "p99_ticks"):
        assert abs(getattr(blocked, key) - getattr(want, key)) <= 0.016 * getattr(want, key)


def test_events_out_of_order_inside_a_batch_are_refused() -> None:
    registry = Registry()
    registry.member("x", "a")
    engine = Engine(registry, start_ticks=0)
    batch = EventBatch.from_columns([5, 3], [0, 0], [R, B], [B, R])
    with pytest.raises(UsageError, match="back in time"):
        engine.feed(batch)


def test_events_before_the_last_one_are_refused() -> None:
    registry = Registry()
    registry.member("x", "a")
    engine = Engine(registry, start_ticks=0, initial={0: R})
    engine.feed(EventBatch.from_columns([5], [0], [R], [B]))
    with pytest.raises(UsageError, match="back in time"):
        engine.feed(EventBatch.from_columns([4], [0], [B], [R]))
    assert engine.snapshot().end_ticks == 5
    assert engine.snapshot(9).domains[0].lifetime_ticks == 9


def _blocked_stats(length: int, closed: bool) -> StateStats:
    registry = Registry()
    registry.member("x", "a")
    engine = Engine(registry, start_ticks=0, initial={0: B})
    engine.feed(EventBatch.from_columns([length], [0], [B], [R]))
    result = engine.finish(length + 1 if closed else length)
    return result.domains[0].states[D.BLOCKED]


LENGTHS = sorted({*range(1, 140), *(1 << k for k in range(6, 63)),
                  *((1 << k) + 1 for k in range(6, 62)), *((1 << k) - 1 for k in range(7, 63)),
                  *np.random.default_rng(7).integers(1, 1 << 62, 50).tolist()})


def test_closed_and_open_episodes_use_the_same_buckets() -> None:
    # closed episodes are bucketed by the C kernel, the open one by histogram.bucket_of
    for length in LENGTHS:
        closed, still_open = _blocked_stats(length, True), _blocked_stats(length, False)
        assert closed == still_open, length
        assert closed.max_ticks == length
        assert length - closed.p50_ticks <= length / 64, length


def test_snapshot_mid_episode_then_continue() -> None:
    source = _source([("x", "a"), ("x", "b")], SWITCHES)
    engine = Engine(source.registry, start_ticks=0, initial={0: R, 1: RN}, interval_ticks=40)
    rows = list(source.batches())[0]
    engine.feed(rows.slice(0, 4))  # rows up to t=30
    snap = engine.snapshot(35)
    # [0,10) hazard, [10,20) partial_contention, [20,30) partial_run, [30,35) full_contention
    assert _ns(snap, "x") == {D.CONCURRENCY_HAZARD: 10, D.PARTIAL_CONTENTION: 10,
                              D.PARTIAL_RUN: 10, D.FULL_CONTENTION: 5}
    (x,) = snap.domains
    assert (x.current_state, x.entered_ticks, x.changes) == (D.FULL_CONTENTION, 30, 4)
    assert snap.intervals == ()  # the first interval [0,40) is still running
    engine.feed(rows.slice(4, len(rows)))
    final = engine.finish(100)
    # same figures as the two-pass pipeline (only the one-pass flag differs)
    assert replace(final, provisional=False) == analyze(source, Window(0, 100, 40))
    assert final.domains[0].states[D.FULL_CONTENTION].count == 1  # not split by the snapshot
