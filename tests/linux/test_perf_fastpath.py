"""The perf.data C pass (``_perfscan``) against the independent model and the previous decoder.

Random traces from the toy scheduler of :mod:`.test_lost_spans` are written
as perf.data files the way perf writes them: each CPU's events in time order,
flushed in rounds that end with FINISHED_ROUND, the CPUs' parts of a round
interleaved and each CPU's round ending at its own time, equal timestamps
across CPUs.  On a complete file the figures must be the model's
(:mod:`.sched_reference`) to the ns.  With LOST records, perf's untimed
LOST_SAMPLES summaries and files cut short, nothing is known to compare with
but the decoder the C pass replaced (:mod:`.perfdata_previous`): the two must
give the same result, anomalies, notes and members, or the same error.  So
must they on the recorded files of ``tests/data/linux`` and, when it is there,
the benchmark's ``bench/out/pipe.perf.data``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstate.analysis.pipeline import analyze
from runstate.errors import InputError
from runstate.sources.base import ReadOptions
from runstate.sources.linux import perfdata_open
from runstate.sources.linux.perfdata import PerfDataSource
from runstate.sources.linux.perfdata_order import place_losses
from runstate.sources.linux.sched import LostEvents
from runstate.sources.linux.schedevents import SchedEvents
from tests.conftest import DATA

from . import perfdata_previous
from .perfdata_previous import PreviousPerfDataSource
from .perfdata_writer import PerfDataWriter
from .sched_reference import Event, truth
from .test_lost_spans import GROUPS, simulate

WRITER = PerfDataWriter()
BENCH = Path(__file__).resolve().parents[2] / "bench" / "out" / "pipe.perf.data"


def tasks_of(ev: Event) -> set[int]:
    """The tasks an event says something about (idle tasks are per CPU: left out)."""
    return {t for t in (ev.pid, ev.other, ev.actor) if t > 0}


def with_ties(events: list[Event], rng: np.random.Generator, rate: float) -> list[Event]:
    """Give some events the time of the event before them on another CPU.

    Only where the event concerns no task that an event of that time on another
    CPU does: then their order, which a reader takes from the file, changes no
    figure.  Events of one time that do concern the same task (the simulation
    starts every CPU at once) are moved 1 ns apart, the later ones with them.
    """
    out: list[Event] = []
    same_time: list[Event] = []
    shift = 0
    for ev in events:
        ev = replace(ev, time=ev.time + shift)
        prev = out[-1] if out else None
        others = set().union(*(tasks_of(e) for e in same_time if e.cpu != ev.cpu))
        related = bool(tasks_of(ev) & others)
        if prev is not None and ev.time == prev.time and related:
            shift += 1
            ev = replace(ev, time=ev.time + 1)
        elif prev is not None and ev.cpu != prev.cpu and not related and rng.random() < rate:
            ev = replace(ev, time=prev.time)
        same_time = same_time + [ev] if prev is not None and ev.time == prev.time else [ev]
        out.append(ev)
    return out


def perf_records(events: list[Event], rng: np.random.Generator, span: int,
                 losses: float = 0.0) -> list[bytes]:
    """The records perf would write: rounds of ``span`` ns, each CPU's part of a round
    ending at its own time within half a span, the parts split and interleaved.  With
    ``losses``, that share of events is preceded by a LOST record on its CPU."""
    n_cpus = max(e.cpu for e in events) + 1
    start = events[0].time
    rounds = (events[-1].time - start) // span + 2
    # each CPU's round r holds its events from cuts[c][r] on (ascending per CPU)
    cuts = [[start + r * span + int(rng.integers(0, span // 2 + 1)) for r in range(rounds + 1)]
            for _ in range(n_cpus)]
    parts: list[list[list[bytes]]] = [[[] for _ in range(n_cpus)] for _ in range(rounds + 1)]
    for ev in events:
        r = int(np.searchsorted(cuts[ev.cpu], ev.time, "right")) - 1
        records = parts[max(r, 0)][ev.cpu]
        if rng.random() < losses:
            records.append(WRITER.lost(ev.time - int(rng.integers(0, 3)), ev.cpu,
                                       int(rng.integers(1, 50))))
        records.append(WRITER.sample(ev.kind, ev.time, ev.cpu, ev.pid, ev.other,
                                     ev.prev_state, max(ev.actor, 0)))
    out = [WRITER.comm(tid, tid, f"task{tid}", start, 0) for tid in (100, 103)]
    for per_cpu in parts:
        pieces = []
        for records in per_cpu:
            at = int(rng.integers(0, len(records) + 1))
            pieces += [records[:at], records[at:]]
        # the pieces in a random order, each CPU's first piece before its second
        slots = rng.permutation(len(pieces))
        placed: list[list[bytes]] = [[] for _ in pieces]
        for cpu in range(n_cpus):
            first, second = sorted(int(x) for x in slots[2 * cpu:2 * cpu + 2])
            placed[first], placed[second] = pieces[2 * cpu], pieces[2 * cpu + 1]
        for records in placed:
            out += records
        out.append(WRITER.finished_round())
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), span=st.sampled_from([40, 150, 600, 5000]),
       ties=st.sampled_from([0.0, 0.3, 0.9]), chunk=st.sampled_from([7, 100, 1 << 18]))
def test_complete_file_is_the_model_exactly(seed: int, span: int, ties: float, chunk: int,
                                            tmp_path_factory) -> None:
    rng = np.random.default_rng(seed)
    events = with_ties(simulate(seed), rng, ties)
    folder = tmp_path_factory.mktemp("perf")
    path, group_file = folder / "complete.data", folder / "groups.json"
    path.write_bytes(WRITER.file(perf_records(events, rng, span)))
    group_file.write_text(json.dumps(GROUPS))
    real = truth(events, GROUPS, range(2))
    source = PerfDataSource(str(path), ReadOptions(group=str(group_file), chunk_rows=chunk))
    result = analyze(source)
    assert (result.start_ticks, result.end_ticks) == (real.start, real.end)
    got = {d.key.removeprefix("group:"): d for d in result.domains}
    for key, states in real.domains.items():
        shown = {s.label: v.ticks for s, v in got[key].states.items()}
        assert shown["lost"] == 0, key
        assert {s: shown[s] for s in states} == states, key
    for key, members in real.members.items():
        rows = {m.key: dict(m.ticks) for m in got[key].members}
        for member, states in members.items():
            assert rows[member]["lost"] == 0
            assert {s: rows[member][s] for s in states} == states, (key, member)


def outcome(source_type: type[PerfDataSource], path: Path, options: ReadOptions) -> tuple:
    """Everything a report shows of a run, or its error."""
    try:
        source = source_type(str(path), options)
        result = analyze(source)
    except InputError as err:
        return ("error", str(err))
    info = source.info
    members = [(m.domain, m.key, m.name) for m in source.registry.members]
    return ("ok", result, dict(info.anomalies), list(info.notes), dict(info.uncertain_ticks),
            info.start_ticks, info.end_ticks, members, dict(info.initial_states))


def same_as_before(path: Path, options: ReadOptions) -> None:
    fast = outcome(PerfDataSource, path, options)
    assert fast == outcome(PreviousPerfDataSource, path, options)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), span=st.sampled_from([40, 600]),
       losses=st.sampled_from([0.0, 0.02, 0.2]), cut=st.sampled_from([None, 0.3, 0.6, 0.95]),
       untimed=st.booleans(), chunk=st.sampled_from([5, 64, 1 << 18]),
       group=st.sampled_from([None, "thread"]), lenient=st.booleans())
def test_files_with_losses_or_cut_short_read_as_before(
        seed: int, span: int, losses: float, cut: float | None, untimed: bool, chunk: int,
        group: str | None, lenient: bool, tmp_path_factory) -> None:
    rng = np.random.default_rng(seed)
    events = with_ties(simulate(seed, steps=300), rng, 0.5)
    records = perf_records(events, rng, span, losses)
    if untimed:
        records.append(WRITER.lost_samples(int(rng.integers(1, 100))))
    blob = WRITER.file(records)
    if cut is not None:
        blob = blob[:int(len(blob) * cut)]
    path = tmp_path_factory.mktemp("perf") / "file.data"
    path.write_bytes(blob)
    same_as_before(path, ReadOptions(group=group, chunk_rows=chunk, lenient=lenient))


RECORDED = sorted((DATA / "linux").glob("*.perf.data"))


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
@pytest.mark.parametrize("options", [ReadOptions(), ReadOptions(group="thread", chunk_rows=333)],
                         ids=["default", "thread-333"])
def test_recorded_files_read_as_before(path: Path, options: ReadOptions) -> None:
    same_as_before(path, options)


@pytest.mark.parametrize("path", RECORDED[:2], ids=lambda p: p.name)
@pytest.mark.parametrize("fraction", [0.4, 0.9])
def test_recorded_files_cut_short_read_as_before(path: Path, fraction: float,
                                                 tmp_path: Path) -> None:
    blob = path.read_bytes()
    cut = tmp_path / "cut.data"
    cut.write_bytes(blob[:int(len(blob) * fraction)])
    same_as_before(cut, ReadOptions())


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_files_beyond_the_cache_read_as_before(path: Path, monkeypatch) -> None:
    """A file with more events than the cache holds is converted as it is read again."""
    monkeypatch.setattr(perfdata_open, "CACHE_EVENTS", 1000)
    monkeypatch.setattr(perfdata_previous, "CACHE_BYTES", 1000 * 29)
    same_as_before(path, ReadOptions(chunk_rows=500, group="thread"))


@pytest.mark.skipif(not BENCH.exists(), reason="bench/out/pipe.perf.data not recorded here")
def test_benchmark_file_reads_as_before() -> None:
    same_as_before(BENCH, ReadOptions())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), ordered=st.booleans(), step=st.sampled_from([3, 50, 1000]))
def test_losses_are_placed_as_before(seed: int, ordered: bool, step: int) -> None:
    """Each loss after its CPU's last event before it, in time-ordered tables (searched
    back from the loss) and others (each CPU's events taken in table order) alike."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    time = np.cumsum(rng.integers(0, 4, n)) if ordered else rng.integers(0, 300, n)
    table = SchedEvents.from_columns(time, rng.integers(0, 3, n), np.zeros(n), np.ones(n),
                                     -np.ones(n), np.zeros(n))
    losses = [LostEvents(int(rng.integers(0, 4)), 0, int(rng.integers(0, 320)),
                         int(rng.integers(1, 9))) for _ in range(int(rng.integers(1, 6)))]
    items: list[SchedEvents | LostEvents] = [table, *losses]
    previous = PreviousPerfDataSource.__new__(PreviousPerfDataSource)
    previous._options = ReadOptions(chunk_rows=step)
    want = previous._place_losses(items)
    got = place_losses(items, table, step)
    assert [type(x) for x in got] == [type(x) for x in want]
    for a, b in zip(got, want, strict=True):
        if isinstance(a, LostEvents):
            assert a == b
        else:
            assert np.array_equal(a.time, b.time) and np.array_equal(a.cpu, b.cpu)
