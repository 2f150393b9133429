"""The engine against the reference model on random streams, plus invariance properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstate.analysis.pipeline import Window, analyze
from runstate.engine import Engine, Resolver
from runstate.engine.results import RunResult
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END
from tests.engine.streams import (
    GrowingSource,
    Stream,
    assert_conserved,
    assert_matches,
    batch_of,
    streams,
)
from tests.reference import Row, run_reference

# new random draws on every run; a failure is replayed from .hypothesis/ and printed
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
SETTINGS = settings(max_examples=800, deadline=None, suppress_health_check=_QUIET)
SMALLER = settings(max_examples=300, deadline=None, suppress_health_check=_QUIET)


def _analyze(stream: Stream, *, one_pass: bool, cuts: list[int] | None = None) -> RunResult:
    window = Window(stream.start, stream.end, stream.interval)
    return analyze(stream.source(cuts), window, one_pass=one_pass)


def _reference(stream: Stream, *, two_pass: bool) -> RunResult:
    return run_reference(stream.registry, stream.rows, start=stream.start, end=stream.end,
                         interval=stream.interval, two_pass=two_pass, initial=stream.initial)


@SETTINGS
@given(streams())
def test_two_pass_matches_reference(stream: Stream) -> None:
    result = _analyze(stream, one_pass=False)
    assert_matches(result, _reference(stream, two_pass=True))
    assert_conserved(result)


@SETTINGS
@given(streams())
def test_one_pass_matches_reference(stream: Stream) -> None:
    result = _analyze(stream, one_pass=True)
    assert_matches(result, _reference(stream, two_pass=False))
    assert_conserved(result)


@SMALLER
@given(streams(), st.lists(st.integers(1, 80), max_size=12), st.booleans())
def test_chunking_does_not_change_anything(stream: Stream, cuts: list[int],
                                           one_pass: bool) -> None:
    whole = _analyze(stream, one_pass=one_pass, cuts=[])
    singles = _analyze(stream, one_pass=one_pass, cuts=list(range(1, len(stream.rows))))
    assert _analyze(stream, one_pass=one_pass, cuts=cuts) == whole
    assert singles == whole


@SMALLER
@given(streams(), st.lists(st.integers(0, 6000), min_size=1, max_size=5), st.booleans())
def test_snapshots_equal_fresh_runs_and_change_nothing(stream: Stream, offsets: list[int],
                                                       one_pass: bool) -> None:
    rows = stream.rows
    s = stream.window_start
    last = max(s, rows[-1].time)
    resolution = None
    if not one_pass:
        resolver = Resolver()
        resolver.feed(batch_of(rows))
        resolution = resolver.result(stream.registry.n_members)
    engine = Engine(stream.registry, start_ticks=s, interval_ticks=stream.interval,
                    resolution=resolution, initial=stream.initial)
    fed = 0
    for t in sorted({s + o for o in offsets if s + o <= last}):
        upto = fed
        while upto < len(rows) and rows[upto].time <= t:
            upto += 1
        if upto > fed:
            engine.feed(batch_of(rows[fed:upto]))
            fed = upto
        snap = engine.snapshot(t)
        want = run_reference(stream.registry, rows, start=s, end=t, interval=stream.interval,
                             two_pass=not one_pass, initial=stream.initial, resolve_rows=rows)
        intervals = want.intervals
        last = intervals[-1] if intervals else None
        if last is not None and last.end_ticks - last.start_ticks < (stream.interval or 0):
            intervals = intervals[:-1]  # a snapshot does not close the running interval
        assert_matches(snap, type(want)(want.start_ticks, want.end_ticks, want.domains, intervals,
                                        want.anomalies, want.provisional))
    if fed < len(rows):
        engine.feed(batch_of(rows[fed:]))
    final = engine.finish()
    want = run_reference(stream.registry, rows, start=s, interval=stream.interval,
                         two_pass=not one_pass, initial=stream.initial)
    assert_matches(final, want)


@SMALLER
@given(streams(), st.booleans())
def test_members_registered_while_reading(stream: Stream, one_pass: bool) -> None:
    source = GrowingSource(stream, rereadable=not one_pass)
    result = analyze(source, Window(stream.start, stream.end, stream.interval),
                     one_pass=one_pass)
    rows = source.mapped_rows(stream.end if one_pass else None)
    want = run_reference(source.registry, rows, start=stream.start,
                         end=stream.end, interval=stream.interval, two_pass=not one_pass)
    assert_matches(result, want)


def _long_stream(seed: int, n_rows: int) -> Stream:
    """A numpy-drawn stream, longer than hypothesis draws: many episodes and epochs."""
    rng = np.random.default_rng(seed)
    registry = Registry()
    for d in range(int(rng.integers(1, 7))):
        for j in range(int(rng.integers(1, 9))):
            registry.member(f"vm{d}", f"v{j}")
    n = registry.n_members
    truth = rng.integers(0, 5, n).tolist()
    rows: list[Row] = []
    t = depth = 0
    for _ in range(n_rows):
        t += int(rng.choice([0, int(rng.integers(1, 30)), int(rng.integers(1, 200_000))]))
        kind = rng.random()
        if kind < 0.004:
            rows.append(Row(t, -1, 0, LOSS_BEGIN))
            depth += 1
        elif kind < (0.05 if depth else 0.0045):  # mostly matched ends, a few stray ones
            rows.append(Row(t, -1, 0, LOSS_END))
            depth = max(0, depth - 1)
        else:
            m = int(rng.integers(0, n))
            new = int(rng.integers(0, 5)) if rng.random() < 0.1 else int(rng.integers(0, 3))
            old = int(rng.integers(0, 5)) if rng.random() < 0.02 else truth[m]
            truth[m] = new
            rows.append(Row(t, m, old, new))
    cuts = sorted(rng.integers(1, n_rows, 5).tolist())
    interval = int(rng.integers(1, t + 2)) if t else None
    return Stream(registry, rows, None, None, interval, {}, cuts)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("one_pass", [False, True])
def test_long_streams_match_reference(seed: int, one_pass: bool) -> None:
    stream = _long_stream(seed, 4000)
    result = _analyze(stream, one_pass=one_pass)
    assert_matches(result, _reference(stream, two_pass=not one_pass))
    assert_conserved(result)
    assert max(d.changes for d in result.domains) > 50  # a rich stream, not a lost one
