"""The fast path's C job (``_job``) against the code it stands in for.

* Its first pass in chunks (joined at their seams, or walked again where they
  do not fit), keeping all, some or none of the rows, learns what one walk of
  the whole file learns: every counter, every pcpu's and every vCPU's figures.
* Its second pass, in one part or two, leaves the engine's state arrays exactly
  as feeding the engine the second pass's batches does (``Engine.feed``, the
  engine's own loop over the rows the column merge yields).
* It hands its state only to an engine in the state it started from, and never
  writes into arrays it was not promised.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstate.engine.core import Engine
from runstate.engine.resolve import Resolution
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace import _job, prefetch
from runstate.sources.xentrace.reader import XentraceSource
from runstate.sources.xentrace.synth import SynthConfig, generate
from tests.xen.helpers import trace_bytes

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def trace_files(draw: st.DrawFn) -> bytes:
    """A random scheduler-consistent trace in a random layout (no lost records: the
    job's files)."""
    seed = draw(st.integers(0, 2**32 - 1))
    gap = draw(st.sampled_from([400, 40_000, 1 << 33]))
    config = SynthConfig(n_pcpus=draw(st.integers(1, 6)), steps=draw(st.integers(20, 3000)),
                         domains=((1, 2), (7, 3), (9, 1)), wrap=draw(st.sampled_from([0, 0.1])),
                         offline=draw(st.sampled_from([0.0, 0.2])),
                         # gaps of 2^32 cycles and more: a kept row's step takes two slots
                         gap=gap)
    return trace_bytes(generate(seed, config), seed=seed,
                       poll=draw(st.sampled_from([2_000, 50_000, 400_000])) * max(1, gap // 400),
                       high_water=draw(st.sampled_from([64, 256, 1 << 20])),
                       early_cpu=draw(st.booleans()),
                       other_every=draw(st.sampled_from([0, 1, 3])))


def first_pass(data: bytes, threads: int, chunk_bytes: int, keep_rows: int,
               parts: int = 1) -> Any:
    job = _job.Job(data, 0, False)
    job.start(threads, False, parts, keep_rows, chunk_bytes)
    assert job.scanned() == _job.SCAN_DONE
    return job


@SETTINGS
@given(trace_files(), st.sampled_from([64, 300, 4096]), st.sampled_from([0, 37, 1 << 20]),
       st.integers(1, 8))
def test_a_first_pass_in_chunks_learns_what_one_walk_learns(data: bytes, chunk_bytes: int,
                                                            keep_rows: int, parts: int) -> None:
    whole = first_pass(data, 1, 1 << 30, 0).result()
    assert first_pass(data, 2, chunk_bytes, keep_rows, parts).result() == whole


def engines(path: Path, layout: tuple[int, int, int]) -> tuple[Engine, Engine, int | None]:
    """The engine fed the column merge's batches, and the engine the job's second pass
    put in its state (in the given layout: chunk bytes, kept rows, parts), and the
    rows the job accounted."""
    chunk_bytes, keep_rows, parts = layout
    fed, accounted = (XentraceSource(str(path), None, ReadOptions(cpu_hz=2.4e9))
                      for _ in range(2))
    state = {}
    for source in (fed, accounted):
        found = source.first_pass()
        assert found is not None
        state[id(source)] = Engine(source.registry, start_ticks=found[1],
                                   resolution=Resolution(*found))
    for batch in fed.batches():
        state[id(fed)].feed(batch)
    before = prefetch.CHUNK_BYTES, prefetch.KEEP_ROWS, prefetch.PARTS, prefetch.SPLIT_MIN_BYTES
    try:
        prefetch.CHUNK_BYTES, prefetch.KEEP_ROWS, prefetch.PARTS = chunk_bytes, keep_rows, parts
        prefetch.SPLIT_MIN_BYTES = 0
        again = XentraceSource(str(path), None, ReadOptions(cpu_hz=2.4e9))
        found = again.first_pass()
        assert found is not None
        engine = Engine(again.registry, start_ticks=found[1], resolution=Resolution(*found))
        rows = again.account(engine, None)
    finally:
        prefetch.CHUNK_BYTES, prefetch.KEEP_ROWS, prefetch.PARTS, prefetch.SPLIT_MIN_BYTES = before
    return state[id(fed)], engine, rows


@SETTINGS
@given(trace_files(), st.sampled_from([(1 << 30, 1 << 20, 1), (300, 37, 2), (4096, 0, 3),
                                       (64, 1 << 20, 4), (64, 1 << 20, 8)]))
def test_the_accounting_second_pass_leaves_the_engine_as_feeding_it_does(
        tmp_path: Path, data: bytes, layout: tuple[int, int, int]) -> None:
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    fed, accounted, rows = engines(path, layout)
    assert rows is not None
    for want, got in zip(fed._s.as_tuple(), accounted._s.as_tuple(), strict=True):
        assert np.array_equal(want, got)


def a_trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.trace"
    path.write_bytes(trace_bytes(generate(5, SynthConfig(n_pcpus=3, steps=800)), seed=5,
                                 poll=50_000))
    return path


def accounted_job(path: Path) -> tuple[Any, XentraceSource, Engine]:
    """A job whose second pass is over, and an engine set up as the pipeline does."""
    source = XentraceSource(str(path), None, ReadOptions(cpu_hz=2.4e9))
    found = source.first_pass()
    assert found is not None and source._plan is not None
    job = source._plan.job
    assert job.account() > 0
    return job, source, Engine(source.registry, start_ticks=found[1],
                               resolution=Resolution(*found))


@pytest.mark.parametrize("where", ["mstate", "msince", "dns", "ep_hist", "globals", "mdom"])
def test_the_job_hands_its_state_only_to_an_engine_in_its_start_state(tmp_path: Path,
                                                                      where: str) -> None:
    """One value changed anywhere in the engine's arrays: nothing is written."""
    job, _, engine = accounted_job(a_trace(tmp_path))
    engine._grow()
    arrays = dict(zip(("mdom", "mstate", "msince", "mns", "dcount", "dlast", "dns", "ep_state",
                       "ep_len", "ep_count", "ep_max", "ep_hist", "globals"),
                      engine._s.as_tuple(), strict=True))
    target = arrays[where].reshape(-1)
    target[random.Random(where).randrange(target.shape[0])] ^= 1
    before = [a.copy() for a in arrays.values()]
    assert job.export(engine._s.as_tuple()) is False
    for want, got in zip(before, arrays.values(), strict=True):
        assert np.array_equal(want, got)


@pytest.mark.parametrize("case", ["short", "dtype", "read_only", "not_tuple"])
def test_the_job_refuses_arrays_it_cannot_write(tmp_path: Path, case: str) -> None:
    job, _, engine = accounted_job(a_trace(tmp_path))
    engine._grow()
    state: Any = list(engine._s.as_tuple())
    if case == "short":
        state[2] = state[2][:-1].copy()
    elif case == "dtype":
        state[6] = state[6].astype(np.int32)
    elif case == "read_only":
        state[3].flags.writeable = False
    if case != "not_tuple":
        state = tuple(state)
    with pytest.raises(ValueError):
        job.export(state)


def test_an_engine_with_intervals_is_not_handed_a_state(tmp_path: Path) -> None:
    """Intervals are cut as rows are fed: the source feeds its batches instead."""
    source = XentraceSource(str(a_trace(tmp_path)), None, ReadOptions(cpu_hz=2.4e9))
    found = source.first_pass()
    assert found is not None
    engine = Engine(source.registry, start_ticks=found[1], interval_ticks=10_000,
                    resolution=Resolution(*found))
    assert source.account(engine, None) is None
    assert int(engine._s.dns.sum()) == 0


@pytest.mark.parametrize("account", [False, True])
def test_a_job_closed_while_it_runs_stops_and_lets_go_of_the_buffer(account: bool) -> None:
    data = bytearray(trace_bytes(generate(2, SynthConfig(n_pcpus=4, steps=30_000)), seed=2,
                                 poll=50_000))
    view = memoryview(data)
    job = _job.Job(view, 0, False)
    job.start(2, account, 2, 1 << 20, 4096)
    job.close()
    del job
    view.release()
    data.extend(b"x")  # no export left
