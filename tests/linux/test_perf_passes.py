"""The perf.data reader's passes: the names pass on its own thread, read-ahead, the kept first pass.

Each way of reading must give what the plain way gives: the first pass that
converts once and keeps its batches (:mod:`runstate.sources.linux.firstpass`)
the engine's own Resolver result and the figures of a second conversion; the
read-ahead thread (:mod:`runstate.sources.linux.perfdata_ahead`) the chunks of
:class:`~runstate.sources.linux.perfdata_order.EventStream`; a names pass that
gave up keeping events too early (its guess) the cached path all the same; the
C pass's 8-byte field reads the reads by size.  Compared on random traces of
the toy scheduler written as perf.data, the recorded files, and the
benchmark's file when it is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstate.engine.resolve import Resolver
from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.states import LOSS_BEGIN, LOSS_END
from runstate.sources.base import ReadOptions
from runstate.sources.linux import _perfscan, keptread, perfdata_ahead, perfdata_open
from runstate.sources.linux.firstpass import FirstRows
from runstate.sources.linux.perfdata import PerfDataSource
from runstate.sources.linux.perfdata_order import COLUMNS, EventStream
from runstate.sources.linux.sched import LostEvents
from tests.conftest import DATA

from . import perfdata_previous
from .perfdata_writer import PerfDataWriter
from .test_lost_spans import simulate
from .test_perf_fastpath import BENCH, RECORDED, outcome, perf_records, same_as_before, with_ties

WRITER = PerfDataWriter()
PINNED = DATA / "linux" / "pinned2.perf.data"


def random_file(folder: Path, seed: int, losses: float = 0.0, tail: float = 0.0) -> Path:
    """A perf.data file of the toy scheduler's events; with ``tail``, then a sparse tail of
    wakeups (of a task already runnable) among empty rounds, ``tail`` times as many bytes
    as the records before it."""
    rng = np.random.default_rng(seed)
    events = with_ties(simulate(seed, steps=300), rng, 0.3)
    records = perf_records(events, rng, 150, losses)
    if tail:
        size, last = sum(len(r) for r in records), events[-1]
        rounds = int(tail * size / 8 / 60)
        for i in range(60):
            records.append(WRITER.sample(1, last.time + 1000 * (i + 1), 0, 0))
            records += [WRITER.finished_round()] * rounds
    path = folder / f"trace{seed}.data"
    path.write_bytes(WRITER.file(records))
    return path


# ---- the first pass kept for the second read ------------------------------------

@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 300), members=st.integers(1, 40),
       markers=st.sampled_from([0.0, 0.05, 0.3]), split=st.integers(1, 6))
def test_first_rows_learns_what_the_resolver_learns(seed: int, n: int, members: int,
                                                     markers: float, split: int) -> None:
    """Random rows with nested and stray loss markers and negative old states, in batches."""
    rng = np.random.default_rng(seed)
    member = rng.integers(0, members, n).astype(np.int32)
    old = rng.integers(-1, 6, n).astype(np.int8)
    new = rng.integers(0, 6, n).astype(np.int8)
    marker = rng.random(n) < markers
    member[marker] = -1
    new[marker] = rng.choice([LOSS_BEGIN, LOSS_END, 3], int(marker.sum()))
    time = np.arange(n, dtype=np.int64)
    cuts = sorted(rng.integers(0, n + 1, split - 1).tolist())
    resolver, first = Resolver(), FirstRows()
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        batch = EventBatch(time[a:b], member[a:b], old[a:b], new[a:b])
        resolver.feed(batch)
        first.feed(batch, members)
    want = resolver.result(members)
    assert np.array_equal(first.states(members), want.states)
    assert (first.first, first.last) == (want.first_time_ticks, want.last_time_ticks)


@pytest.mark.parametrize("keep,spill", [(0, 0), (0, 1 << 40), (5000, 1 << 40), (1 << 40, 0)],
                         ids=["read-again", "spilled", "spilled-later", "kept"])
@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_kept_spilled_or_not_the_second_read_is_the_first(path: Path, keep: int, spill: int,
                                                          monkeypatch) -> None:
    """The figures with the first pass's batches kept (in memory, or in a temporary file
    from the start or past a budget) equal those of a second conversion, and all equal
    the previous decoder's (which runs the engine's Resolver)."""
    monkeypatch.setattr(keptread, "KEEP_BYTES", keep)
    monkeypatch.setattr(keptread, "spill_room", lambda: spill)
    same_as_before(path, ReadOptions())


def test_a_spill_without_room_reads_the_file_again(monkeypatch) -> None:
    monkeypatch.setattr(keptread, "KEEP_BYTES", 0)
    monkeypatch.setattr(keptread, "spill_room", lambda: 100)  # room for no batch
    source = PerfDataSource(str(RECORDED[0]), ReadOptions())
    source.first_pass()
    assert source._kept is None
    same_as_before(RECORDED[0], ReadOptions())


def test_the_kept_batches_are_handed_out_again_as_converted() -> None:
    source = PerfDataSource(str(RECORDED[0]), ReadOptions())
    source.first_pass()
    kept = source._kept
    assert kept is not None and kept.batches
    again = list(source.batches())
    assert [id(b) for b in again] == [id(b) for b in kept.batches]
    assert dict(source.info.anomalies) == kept.anomalies


class _FullDisk:
    """A temporary file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.closed = False

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(28, "No space left on device")
        self.room -= size
        return size

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("room", [0, 20_000])
def test_a_spill_that_fails_reads_the_file_again(room: int, monkeypatch) -> None:
    """A write to the temporary file fails (at once, or later): nothing is kept, the file
    is closed, and the second pass converts the file again, to the same figures."""
    files: list[_FullDisk] = []
    monkeypatch.setattr(keptread, "KEEP_BYTES", 0)
    monkeypatch.setattr(keptread, "spill_room", lambda: 1 << 40)
    monkeypatch.setattr(tempfile, "TemporaryFile",
                        lambda **_: files.append(_FullDisk(room)) or files[-1])
    options = ReadOptions(chunk_rows=500)  # many batches: some written before the failure
    source = PerfDataSource(str(RECORDED[1]), options)
    source.first_pass()
    assert source._kept is None and files and all(f.closed for f in files)
    same_as_before(RECORDED[1], options)


# ---- reading ahead ---------------------------------------------------------------

def items_of(iterable) -> list[tuple]:
    """Chunks and losses as plain values (copies: read-ahead buffers are reused)."""
    out = []
    for item in iterable:
        if isinstance(item, LostEvents):
            out.append(("loss", item))
        else:
            out.append(("chunk", item.time.copy(), item.cpu.copy(), item.pid.copy(),
                        item.other_pid.copy(), item.prev_state.copy(), item.actors().copy()))
    return out


def same_items(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and (x[1] == y[1] if x[0] == "loss" else
                          all(np.array_equal(p, q) for p, q in zip(x[1:], y[1:], strict=True)))
        for x, y in zip(a, b, strict=True))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), losses=st.sampled_from([0.0, 0.05]),
       chunk=st.sampled_from([3, 40, 1 << 18]))
def test_read_ahead_gives_the_stream_s_chunks(seed: int, losses: float, chunk: int,
                                              tmp_path_factory) -> None:
    path = random_file(tmp_path_factory.mktemp("ahead"), seed, losses)
    source = PerfDataSource(str(path), ReadOptions())
    plain = items_of(EventStream(source._scanner(), chunk, 2 * chunk + 1024, source._error))
    ahead = items_of(perfdata_ahead.read_ahead(source._scanner(), chunk, source._error))
    assert same_items(ahead, plain)


def test_a_read_ahead_left_early_stops_its_thread(tmp_path: Path) -> None:
    source = PerfDataSource(str(random_file(tmp_path, 5)), ReadOptions())
    before = set(threading.enumerate())
    items = perfdata_ahead.read_ahead(source._scanner(), 1, source._error)
    first = next(items)
    assert len(first) > 0
    started = [t for t in set(threading.enumerate()) - before
               if t.name == "perf.data read-ahead"]
    assert len(started) == 1 and started[0].is_alive()  # held up: its buffers are full
    items.close()
    assert not started[0].is_alive()


def test_a_read_ahead_raises_the_stream_s_error_after_its_items(tmp_path: Path) -> None:
    blob = bytearray(RECORDED[0].read_bytes())
    header = PerfDataSource(str(RECORDED[0]), ReadOptions()).header
    pos, middle = header.data_offset, header.data_offset + header.data_size // 2
    while pos < middle:
        pos += int.from_bytes(blob[pos + 6:pos + 8], "little")
    blob[pos + 6:pos + 8] = b"\x00\x00"  # a record of size 0 in the middle of the data
    bad = tmp_path / "bad.data"
    bad.write_bytes(bytes(blob))
    source = PerfDataSource(str(bad), ReadOptions())

    def run(items) -> tuple[list[tuple], str]:
        got: list[tuple] = []
        try:
            for _ in items_of_lazy(items, got):
                pass
        except Exception as err:  # noqa: BLE001 - the error itself is compared
            return got, str(err)
        return got, ""

    plain = run(EventStream(source._scanner(), 40, 1104, source._error))
    ahead = run(perfdata_ahead.read_ahead(source._scanner(), 40, source._error))
    assert str(pos) in plain[1]
    assert ahead[1] == plain[1]
    assert same_items(ahead[0], plain[0])


def items_of_lazy(items, into: list[tuple]):
    for item in items:
        into.extend(items_of([item]))
        yield item


# ---- the names pass --------------------------------------------------------------

@pytest.mark.parametrize("seed", [3, 17, 29])
def test_a_names_pass_that_gave_up_too_early_is_run_again(seed: int, tmp_path: Path,
                                                           monkeypatch) -> None:
    """Events mostly in the first seventeenth of the data, then a sparse tail: the pass guesses
    they will not fit a small cache, they do, so a pass that keeps them runs."""
    path = random_file(tmp_path, seed, tail=16.0)
    options = ReadOptions(chunk_rows=5)
    events = PerfDataSource(str(path), options)._names_pass.wait()[0]
    monkeypatch.setattr(perfdata_open, "CACHE_EVENTS", events)
    monkeypatch.setattr(perfdata_previous, "CACHE_BYTES", events * 29)
    source = PerfDataSource(str(path), options)
    guessed = source._names_pass
    source._task_names()
    assert source._names_pass is not guessed and source._cache is not None
    assert guessed.wait() == (events, 1)
    same_as_before(path, options)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), losses=st.sampled_from([0.0, 0.05, 0.3]),
       untimed=st.booleans(), cache=st.sampled_from([1, 50, 400]),
       chunk=st.sampled_from([5, 64]), group=st.sampled_from([None, "thread"]))
def test_files_beyond_a_tiny_cache_read_as_the_cached_path_does(
        seed: int, losses: float, untimed: bool, cache: int, chunk: int, group: str | None,
        tmp_path_factory) -> None:
    """Past the cache the names pass only names (no event held or ordered) and the file
    is converted as it is read again, ahead of the converter; the figures are the
    previous decoder's, which reads such a file again too."""
    rng = np.random.default_rng(seed)
    events = with_ties(simulate(seed, steps=300), rng, 0.3)
    records = perf_records(events, rng, 150, losses)
    if untimed:
        records.append(WRITER.lost_samples(int(rng.integers(1, 100))))
    path = tmp_path_factory.mktemp("tiny") / "file.data"
    path.write_bytes(WRITER.file(records))
    with pytest.MonkeyPatch.context() as patch:  # one per example
        patch.setattr(perfdata_open, "CACHE_EVENTS", cache)
        patch.setattr(perfdata_previous, "CACHE_BYTES", cache * 29)
        same_as_before(path, ReadOptions(group=group, chunk_rows=chunk))


def test_a_source_never_read_ends_its_names_pass() -> None:
    """The names pass runs on a C thread of its own (not in ``threading``): the
    process's thread count comes back once the source is dropped."""
    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    before = threads()
    for _ in range(5):
        source = PerfDataSource(str(RECORDED[0]), ReadOptions())
        del source
    assert threads() == before


def test_a_scanner_runs_one_pass() -> None:
    source = PerfDataSource(str(PINNED), ReadOptions())
    scanner = source._scanner()
    scanner.start(1000, 100, False)
    with pytest.raises(RuntimeError):
        scanner.start(1000, 100, False)
    with pytest.raises(RuntimeError):
        scanner.read(tuple(np.empty(10, d) for d in COLUMNS), 5)
    count, overflow = scanner.wait()
    assert count == source._names_pass.wait()[0] and overflow == int(count > 1000)
    unstarted = source._scanner()
    for method in (unstarted.wait, unstarted.items, unstarted.columns):
        with pytest.raises(RuntimeError):
            method()


def test_a_prefetched_pass_is_claimed_by_the_reader_of_that_very_file(tmp_path: Path) -> None:
    path = tmp_path / "copy.data"
    path.write_bytes(RECORDED[0].read_bytes())
    want = outcome(PerfDataSource, path, ReadOptions())
    perfdata_open.prefetch(str(path), ReadOptions(), True)
    started = perfdata_open._started[str(path)].scanner
    source = PerfDataSource(str(path), ReadOptions())
    assert source._names_pass is started and str(path) not in perfdata_open._started
    perfdata_open.prefetch(str(path), ReadOptions(), True)
    assert outcome(PerfDataSource, path, ReadOptions()) == want


def test_a_prefetched_pass_is_not_claimed_for_other_options_or_a_changed_file(
        tmp_path: Path) -> None:
    path = tmp_path / "copy.data"
    path.write_bytes(RECORDED[0].read_bytes())
    perfdata_open.prefetch(str(path), ReadOptions(lenient=True), False)
    started = perfdata_open._started[str(path)].scanner
    assert PerfDataSource(str(path), ReadOptions())._names_pass is not started
    perfdata_open.prefetch(str(path), ReadOptions(), False)
    started = perfdata_open._started[str(path)].scanner
    os.utime(path, ns=(1, 1))
    assert PerfDataSource(str(path), ReadOptions())._names_pass is not started
    assert str(path) not in perfdata_open._started


def test_a_file_that_cannot_be_prefetched_is_reported_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "short.data"
    path.write_bytes(RECORDED[0].read_bytes()[:300])
    perfdata_open.prefetch(str(path), ReadOptions(), True)
    perfdata_open.prefetch(str(tmp_path / "missing.data"), ReadOptions(), True)
    assert not perfdata_open._started
    with pytest.raises(InputError, match="short.data"):
        PerfDataSource(str(path), ReadOptions())


def test_opening_a_perf_data_file_starts_its_pass_before_numpy() -> None:
    """The reader's modules import no numpy: its pass can run while numpy is imported."""
    code = ("import sys; import runstate.sources.linux.perfdata, "
            "runstate.sources.linux.perfdata_open; print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


# ---- the C pass's field reads ------------------------------------------------------

SWITCH = (372, 0, 64, 0, (24, 4, 1), (56, 4, 1), (32, 8, 1), (4, 4, 1), (8, 16), (40, 16))


@pytest.mark.parametrize("size,signed", [(1, 0), (1, 1), (2, 0), (2, 1), (4, 0), (4, 1),
                                         (8, 1)])
def test_fields_read_whole_or_by_size_agree(size: int, signed: int) -> None:
    """A kind whose fields all lie 8 bytes before its data's end reads each as 8 bytes and
    cuts it; one with a field nearer the end reads by size.  Both give the same values."""
    pid = (24, size, signed)
    wide = (*SWITCH[:4], pid, SWITCH[5], SWITCH[6], SWITCH[7], *SWITCH[8:])
    narrow = (*SWITCH[:4], pid, SWITCH[5], SWITCH[6], (60, 4, 1), *SWITCH[8:])
    got = [columns_of(kind) for kind in (wide, narrow)]
    for column in (0, 3, 4, 5):  # time, pid, other, prev_state
        assert np.array_equal(got[0][column], got[1][column])
    raw = columns_of(SWITCH)[3].astype(np.int64)
    bits = 8 * size
    want = raw & ((1 << bits) - 1) if bits < 64 else raw
    if signed and bits < 64:
        want = np.where(want >= 1 << (bits - 1), want - (1 << bits), want)
    assert np.array_equal(got[0][3], want.astype(np.int32))


def columns_of(kind: tuple) -> list[np.ndarray]:
    fd = os.open(PINNED, os.O_RDONLY)
    try:
        scanner = _perfscan.Scanner(fd, 1064, 197584, (24, 40, 0, 56, 0, 24, 16, 1), (kind,),
                                    np.zeros(0, np.int64), (0, 0, 2))
    finally:
        os.close(fd)
    cols = [np.empty(100_000, d) for d in COLUMNS]
    n, why = scanner.read(tuple(cols), 1 << 30)
    assert why == _perfscan.STOP_END
    return [c[:n] for c in cols]


@pytest.mark.skipif(not BENCH.exists(), reason="bench/out/pipe.perf.data not recorded here")
def test_the_benchmark_file_read_again_or_spilled_reads_as_kept(monkeypatch) -> None:
    kept = outcome(PerfDataSource, BENCH, ReadOptions())
    monkeypatch.setattr(keptread, "KEEP_BYTES", 0)
    monkeypatch.setattr(keptread, "spill_room", lambda: 0)
    assert outcome(PerfDataSource, BENCH, ReadOptions()) == kept
    monkeypatch.setattr(keptread, "spill_room", lambda: 1 << 40)
    assert outcome(PerfDataSource, BENCH, ReadOptions()) == kept
