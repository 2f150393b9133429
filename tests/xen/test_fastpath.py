"""Exact mode's fast path for files (``sources.xentrace.fastpath``) against the model
and against the generic path it stands in for.

Random scheduler-consistent scenarios (``synth``) are written with every
layout knob: polling rounds, high-water flushes, one pcpu flushed early,
unrelated records, wrap records, continue-running records, lost records and
equal TSCs on different pcpus (only where their order changes no figure, as
a scheduler writes them).  On each file:

* the cycles per domain and state are the model's (``tests/xen/model.py``),
  for the whole trace and for a window (``--from``/``--to``);
* the fast path's result is the generic path's in every field (figures,
  episodes, anomalies, notes, the members and their order), and so are the
  event rows the two second passes yield;
* the fast path is taken exactly when the file has no lost records;
* all of this whatever the fast path's layout: its first pass in one walk or
  in chunks (joined at their seams), the rows it keeps for its second pass
  (all, some, none), and its accounting in one part or two.

Cut, corrupted and ``--lenient`` files must also give the generic path's
result or error, whichever path reads them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstate.analysis import pipeline
from runstate.analysis.pipeline import TraceWindow, analyze
from runstate.engine.results import RunResult
from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace import fastpath, prefetch
from runstate.sources.xentrace.reader import XentraceSource
from runstate.sources.xentrace.synth import Scenario, SynthConfig, generate
from tests.xen.helpers import cycles, trace_bytes
from tests.xen.model import expected

HZ = 2.4e9
#: what the reader counts, as opposed to the engine
READER_COUNTS = ("lost_records", "lost_record_markers", "wrap_records",
                 "truncated_final_window")
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


class GenericSource(XentraceSource):
    """The reader without its fast path: the pipeline reads every batch twice."""

    first_pass = None  # type: ignore[assignment]


def tied(sc: Scenario, seed: int, rate: float) -> Scenario:
    """Give some records the TSC of the record before them, on another pcpu.

    Only records of a vCPU that no other record of that TSC names (their order
    across pcpus, which the reader takes from the file, then changes no figure),
    and neither onto nor from a TSC a lost or wrap record is written against on
    that pcpu (the writer finds those by pcpu and TSC).
    """
    rng = random.Random(seed)
    pinned = {(x.pcpu, x.tsc + 1) for x in sc.losses} | {(p, t) for p, t, _, _ in sc.wraps}
    pinned |= {(e.pcpu, e.tsc) for e in sc.events if e.dropped}
    events = list(sc.events)
    for i in range(1, len(events)):
        e, prev = events[i], events[i - 1]
        if (e.pcpu == prev.pcpu or (e.pcpu, e.tsc) in pinned or (e.pcpu, prev.tsc) in pinned
                or rng.random() >= rate or prev.dropped):
            continue
        same = [x for x in events[:i] if x.tsc == prev.tsc]
        if all((x.dom, x.vcpu) != (e.dom, e.vcpu) for x in same):
            events[i] = replace(e, tsc=prev.tsc)
    return replace(sc, events=events)


@st.composite
def traces(draw: st.DrawFn, losses: bool) -> tuple[int, SynthConfig, float,
                                                   dict[str, int | bool]]:
    """What a scenario is made from (seed, knobs, tie rate) and the layout to write
    it with: small to print when an example fails."""
    seed = draw(st.integers(0, 2**32 - 1))
    # gaps of 2^32 cycles and more take a kept row two slots (fastpath.h)
    gap = draw(st.sampled_from([8, 400, 40_000, 1 << 33]))
    doms = draw(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 5)), min_size=1,
                         max_size=4, unique_by=lambda d: d[0]))
    config = SynthConfig(n_pcpus=draw(st.integers(1, 8)), domains=tuple(doms),
                         steps=draw(st.one_of(st.integers(5, 300), st.integers(300, 4000))),
                         loss=draw(st.sampled_from([0.3, 0.8])) if losses else 0.0,
                         wrap=draw(st.sampled_from([0.0, 0.1])),
                         offline=draw(st.sampled_from([0.0, 0.2])),
                         gap=gap)
    layout: dict[str, int | bool] = {
        "seed": seed, "poll": draw(st.sampled_from([2_000, 50_000, 400_000, 5_000_000]))
        * max(1, gap // 40_000),
        "high_water": draw(st.sampled_from([64, 128, 2048, 1 << 20])),
        "early_cpu": draw(st.booleans()), "other_every": draw(st.sampled_from([0, 1, 3]))}
    return seed, config, draw(st.sampled_from([0.0, 0.3, 0.9])), layout


Trace = tuple[int, SynthConfig, float, dict[str, int | bool]]


def written(tmp_path: Path, trace: Trace) -> tuple[Scenario, Path]:
    seed, config, rate, layout = trace
    sc = tied(generate(seed, config), seed, rate)
    path = tmp_path / "t.trace"
    path.write_bytes(trace_bytes(sc, **layout))
    return sc, path


@contextmanager
def merge_threads(on: bool) -> Iterator[None]:
    """The second pass with its merge threads, or its accounting in two parts (where
    the machine has two cores) however few rows there are, or without them."""
    before = fastpath.THREAD_MIN_ROWS, prefetch.SPLIT_MIN_BYTES
    fastpath.THREAD_MIN_ROWS = prefetch.SPLIT_MIN_BYTES = 0 if on else 1 << 62
    try:
        yield
    finally:
        fastpath.THREAD_MIN_ROWS, prefetch.SPLIT_MIN_BYTES = before


#: the fast path's layouts: bytes per chunk of its first pass (where the machine has
#: two cores), rows it keeps for its second, parts of the domains that accounts apart
#: (with merge_threads on)
LAYOUTS = st.tuples(st.sampled_from([1 << 30, 4096, 300]), st.sampled_from([1 << 22, 0, 37]),
                    st.sampled_from([2, 3, 5]))
Layout = tuple[int, int, int]


@contextmanager
def job_layout(layout: Layout) -> Iterator[None]:
    before = prefetch.CHUNK_BYTES, prefetch.KEEP_ROWS, prefetch.PARTS
    prefetch.CHUNK_BYTES, prefetch.KEEP_ROWS, prefetch.PARTS = layout
    try:
        yield
    finally:
        prefetch.CHUNK_BYTES, prefetch.KEEP_ROWS, prefetch.PARTS = before


def read(source: XentraceSource, window: TraceWindow | None = None) -> RunResult:
    return analyze(source) if window is None else analyze(source, window)


def open_both(path: Path, **opts: object) -> tuple[XentraceSource, XentraceSource]:
    options = ReadOptions(cpu_hz=HZ, **opts)  # type: ignore[arg-type]
    return XentraceSource(str(path), None, options), GenericSource(str(path), None, options)


def assert_same_run(fast: XentraceSource, generic: XentraceSource,
                    window: TraceWindow | None = None) -> RunResult:
    """Both paths give one result, one ``info`` and the same members, in one order."""
    got, want = read(fast, window), read(generic, window)
    assert got == want
    assert fast.info == generic.info
    assert [(m.key, m.domain) for m in fast.registry.members] == \
        [(m.key, m.domain) for m in generic.registry.members]
    assert [(d.key, d.tags, d.expected_members) for d in fast.registry.domains] == \
        [(d.key, d.tags, d.expected_members) for d in generic.registry.domains]
    return got


def window_of(source: XentraceSource, seed: int) -> tuple[TraceWindow, tuple[int, int]] | None:
    """A random window inside the trace, in seconds and in ticks (None: the trace
    spans too few ticks for one)."""
    info = source.info
    assert info.origin is not None and info.start_ticks is not None and info.end_ticks is not None
    if info.end_ticks - info.start_ticks < 2:
        return None
    rng = random.Random(seed)
    a = rng.randint(info.start_ticks, info.end_ticks - 1)
    b = rng.randint(a + 1, info.end_ticks)
    seconds = (Fraction(a - info.origin, int(HZ)), Fraction(b - info.origin, int(HZ)))
    return TraceWindow(*seconds), (a, b)


def checked(tmp_path: Path, trace: Trace) -> tuple[Scenario, Path, XentraceSource]:
    """Write the trace: the paths must agree with each other and with the model."""
    sc, path = written(tmp_path, trace)
    fast, generic = open_both(path)
    assert cycles(assert_same_run(fast, generic)) == expected(sc)
    return sc, path, fast


@SETTINGS
@given(traces(losses=False), st.booleans(), LAYOUTS)
def test_fast_path_equals_model_and_generic_path(tmp_path: Path, trace: Trace,
                                                 threaded: bool, layout: Layout) -> None:
    with merge_threads(threaded), job_layout(layout):
        sc, path, fast = checked(tmp_path, trace)
        assert fast._plan is not None, "a file without lost records takes the fast path"
        windowed = window_of(fast, trace[0])
        if windowed is not None:
            fast, generic = open_both(path)
            assert cycles(assert_same_run(fast, generic, windowed[0])) == \
                expected(sc, windowed[1])


@SETTINGS
@given(traces(losses=True))
def test_lost_records_take_the_generic_path(tmp_path: Path, trace: Trace) -> None:
    sc, _, fast = checked(tmp_path, trace)
    assert (fast._plan is None) == bool(sc.losses)


def rows(batches: list[EventBatch]) -> list[np.ndarray]:
    whole = EventBatch.concat(batches)
    return [whole.time, whole.member, whole.old_state, whole.new_state]


@SETTINGS
@given(traces(losses=False), st.sampled_from([1024, 5000, 1 << 18]), st.booleans())
def test_second_pass_yields_the_generic_rows(tmp_path: Path, trace: Trace, chunk_rows: int,
                                             threaded: bool) -> None:
    """Row for row, in batches of at most the rows asked for."""
    _, path = written(tmp_path, trace)
    fast, generic = open_both(path, chunk_rows=chunk_rows)
    assert fast.first_pass() is not None
    with merge_threads(threaded):
        got = [EventBatch(*(c.copy() for c in (b.time, b.member, b.old_state, b.new_state)))
               for b in fast.batches()]
    want = list(generic.batches())
    assert all(len(b) <= chunk_rows for b in got)
    for a, b in zip(rows(got), rows(want), strict=True):
        assert np.array_equal(a, b)
    assert fast.info == generic.info


def outcome(source: XentraceSource) -> RunResult | str:
    try:
        return read(source)
    except InputError as err:
        return str(err)


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("seed", range(30))
def test_damaged_files_give_the_generic_result_or_error(tmp_path: Path, seed: int,
                                                        lenient: bool) -> None:
    """Cut short, or with bytes overwritten: the same report or the same error line."""
    rng = random.Random(seed)
    sc = generate(seed, SynthConfig(n_pcpus=rng.randint(1, 4), steps=200, wrap=0.05))
    data = bytearray(trace_bytes(sc, seed=seed, poll=50_000, high_water=256, other_every=2))
    if seed % 3 == 0:
        data = data[:rng.randrange(13, len(data))]
    else:
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    path = tmp_path / "t.trace"
    path.write_bytes(bytes(data))
    fast, generic = open_both(path, lenient=lenient)
    with merge_threads(seed % 2 == 0), job_layout((256 if seed % 3 else 1 << 30, seed % 4 * 20,
                                                   2 + seed % 3)):
        assert outcome(fast) == outcome(generic)
    assert fast.info == generic.info


@pytest.mark.parametrize("loss", [0.0, 0.8])
@pytest.mark.parametrize("source", [XentraceSource, GenericSource])
def test_a_window_ending_early_still_reports_what_the_reader_counted(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: type[XentraceSource],
        loss: float) -> None:
    """The second pass stops at the window's end; the lost and wrap records counted
    over the whole file are reported all the same, also when the first pass's batches
    are too many to keep (the generic path then reads the file again)."""
    monkeypatch.setattr(pipeline, "REPLAY_BUDGET_BYTES", 0)
    sc = generate(4, SynthConfig(n_pcpus=3, steps=400, loss=loss, wrap=0.1))
    path = tmp_path / "t.trace"
    path.write_bytes(trace_bytes(sc, seed=4, poll=50_000))
    whole = analyze(source(str(path), None, ReadOptions(cpu_hz=HZ)))
    early = analyze(source(str(path), None, ReadOptions(cpu_hz=HZ)),
                    TraceWindow(Fraction(0), Fraction(1, 10**6)))
    counted = {k: v for k, v in whole.anomalies.items() if k in READER_COUNTS and v}
    assert counted, "the scenario has something to count"
    assert {k: v for k, v in early.anomalies.items() if k in READER_COUNTS} == counted


def test_the_benchmark_trace_gives_the_generic_result() -> None:
    """The trace the speed is measured on, when it has been generated."""
    path = Path(__file__).resolve().parents[2] / "bench" / "out" / "xen_bench_x1_s1.trace"
    if not path.exists():
        pytest.skip("bench/out/xen_bench_x1_s1.trace not generated")
    fast, generic = open_both(path)
    assert_same_run(fast, generic)
    assert fast._plan is not None
