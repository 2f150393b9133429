"""User windows (seconds of the trace's clock) give exactly the engine's figures for that span.

The judge is tests/reference.py: a window ``[a, b]`` must report, per domain and
state, what the reference's whole-trace run spends in ``[a, b]``, after clipping
to the trace; a window wholly outside is an error naming the trace's span.
Quiet stretches of intervals and the interval-count limit are checked here too.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstate.analysis.pipeline import IntervalLimit, TraceWindow, Window, analyze
from runstate.engine import Engine
from runstate.engine.results import IntervalResult, RunResult
from runstate.errors import InputError, UsageError
from runstate.model.registry import Registry
from runstate.model.states import DomainState
from tests.engine.streams import MemorySource, Stream, batch_of, streams
from tests.reference import Row, run_reference

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=_QUIET)

#: a TSC-like clock: ticks at 3 GHz, seconds counted from the first record
HZ = 3_000_000_000

Figures = dict[str, tuple[int, ...]]


def _figures(result: RunResult) -> Figures:
    return {d.key: tuple(d.states[s].ticks for s in DomainState)
            for d in result.domains if d.lifetime_ticks}


def _reference_span(stream: Stream, a: int, b: int, *, two_pass: bool) -> Figures:
    """What the reference's whole-trace run spends in [a, b]: its totals up to b minus
    its totals up to a (both runs start at the trace start and resolve over all rows)."""

    def upto(end: int) -> dict[str, list[int]]:
        ref = run_reference(stream.registry, stream.rows, end=end, two_pass=two_pass,
                            initial=stream.initial)
        return {d.key: [d.states[s].ticks for s in DomainState] for d in ref.domains}

    before, after = upto(a), upto(b)
    spans = {k: tuple(x - y for x, y in zip(after[k], before[k], strict=True)) for k in after}
    return {k: v for k, v in spans.items() if sum(v)}


def _source(stream: Stream, tsc: bool) -> MemorySource:
    source = stream.source()
    if tsc:
        source.info.cpu_hz = float(HZ)
        source.info.origin = stream.rows[0].time
    return source


def _seconds(tick: int, origin: int, tsc: bool) -> Fraction:
    return Fraction(tick - origin, HZ) if tsc else Fraction(tick, 10**9)


@SETTINGS
@given(streams(), st.integers(-200, 6000), st.integers(1, 6000), st.booleans(), st.booleans())
def test_window_equals_the_reference_span(stream: Stream, offset: int, length: int,
                                          tsc: bool, one_pass: bool) -> None:
    rows = stream.rows
    first, last = rows[0].time, rows[-1].time
    a, b = first + offset, first + offset + length
    window = TraceWindow(_seconds(a, first, tsc), _seconds(b, first, tsc))
    source = _source(stream, tsc)
    if min(b, last) <= max(a, first):
        with pytest.raises(InputError, match="outside the trace, which spans"):
            analyze(source, window, one_pass=one_pass)
        return
    result = analyze(source, window, one_pass=one_pass)
    lo, hi = max(a, first), min(b, last)
    assert (result.start_ticks, result.end_ticks) == (lo, hi)
    clipped = any("clipped" in note for note in source.info.notes)
    assert clipped == ((lo, hi) != (a, b))
    assert _figures(result) == _reference_span(stream, lo, hi, two_pass=not one_pass)


@SETTINGS
@given(streams(), st.data())
def test_window_equals_the_engines_own_interval_row(stream: Stream, data: st.DataObject) -> None:
    """The CLI promise in the engine's terms: ``--from/--to`` of a row = that row."""
    rows = stream.rows
    span = rows[-1].time - rows[0].time
    if span == 0:
        return
    step = data.draw(st.integers(max(1, span // 40), span))
    whole = analyze(stream.source(), Window(interval_ticks=step))
    row = data.draw(st.sampled_from(whole.intervals))
    window = TraceWindow(Fraction(row.start_ticks, 10**9), Fraction(row.end_ticks, 10**9))
    part = analyze(stream.source(), window)
    assert _figures(part) == {k: tuple(v[s] for s in DomainState)
                              for k, v in row.domains.items()}


def _two_vcpus() -> tuple[Registry, list[Row]]:
    registry = Registry()
    registry.member("vm", "v0")
    registry.member("vm", "v1")
    # running, then idle from 2 000 ns to 50 000 ns, with nothing in between
    rows = [Row(1000, 0, 2, 0), Row(1000, 1, 2, 0), Row(2000, 0, 0, 2), Row(2000, 1, 0, 2),
            Row(50_000, 0, 2, 0)]
    return registry, rows


def test_outside_window_names_the_span_in_the_users_seconds() -> None:
    registry, rows = _two_vcpus()
    source = MemorySource(registry, rows)
    source.info.cpu_hz, source.info.origin = float(HZ), 1000
    with pytest.raises(InputError) as err:
        analyze(source, TraceWindow(Fraction(1), Fraction(2)))
    # the trace spans 49 000 ticks at 3 GHz after its first record
    assert "spans 0 .. 0.000016333 s" in str(err.value)


def test_window_ending_before_it_starts_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        TraceWindow(Fraction(2), Fraction(1))


def test_a_quiet_stretch_is_one_call_with_the_right_figures() -> None:
    registry, rows = _two_vcpus()
    calls: list[tuple[IntervalResult, int]] = []
    engine = Engine(registry, start_ticks=1000, interval_ticks=10,
                    on_interval_run=lambda first, n: calls.append((first, n)))
    engine.feed(batch_of(rows))
    result = engine.finish()
    assert sum(n for _, n in calls) == (50_000 - 1000) // 10
    assert len(calls) <= 4  # not one call per interval
    ref = run_reference(registry, rows, start=1000, interval=10)
    expanded = [IntervalResult(first.start_ticks + k * 10, first.end_ticks + k * 10, first.domains)
                for first, n in calls for k in range(n)]
    assert expanded == list(ref.intervals)
    assert result.intervals == ()


def test_too_many_intervals_are_refused_before_any_work() -> None:
    registry, rows = _two_vcpus()
    sink: list[IntervalResult] = []
    with pytest.raises(UsageError, match="49,000 intervals, more than 10,000"):
        analyze(MemorySource(registry, rows), TraceWindow(interval_ns=1),
                on_interval=sink.append, interval_limit=IntervalLimit(10_000))
    assert sink == []


def test_a_one_pass_read_counts_its_intervals_as_they_come() -> None:
    registry, rows = _two_vcpus()
    source = MemorySource(registry, rows, rereadable=False)
    with pytest.raises(UsageError, match="more than 1,000"):
        analyze(source, TraceWindow(interval_ns=1), interval_limit=IntervalLimit(1000),
                on_interval_run=lambda first, n: None)
