"""The tracefs page decoder: synthetic pages with known answers, a real recording
checked against the kernel's own text rendering, corruption, and the CPU merge."""

from __future__ import annotations

import gzip
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from runstate.analysis.pipeline import analyze
from runstate.errors import InputError
from runstate.model.states import DomainState
from runstate.sources.base import ReadOptions
from runstate.sources.linux.recording import RecordingSource, load_formats, load_meta
from runstate.sources.linux.schedevents import SchedEvents, SchedKind
from runstate.sources.linux.tracefs_raw import (
    PageStreamDecoder,
    SchedDecoder,
    merge_streams,
    parse_header_page,
    walk_pages,
)
from tests.conservation import assert_lifetime_from_members, assert_lifetimes
from tests.linux import kernel_text
from tests.linux.pages import PageBuilder, payload

FIXTURE = Path(__file__).parents[1] / "data" / "linux" / "tracefs" / "rec"
EVENTS = ["sched_switch", "sched_wakeup", "sched_wakeup_new", "sched_process_fork",
          "sched_process_exit"]


@pytest.fixture(scope="module")
def formats():
    return load_formats(str(FIXTURE), EVENTS)[1]


def _kernel_text() -> str:
    with gzip.open(FIXTURE / "trace.txt.gz", "rt") as f:
        return f.read()


def _switch(formats, prev, nxt, state=1):
    return payload(formats["sched_switch"], prev_pid=prev, next_pid=nxt, prev_state=state,
                   prev_comm=f"t{prev}", next_comm=f"t{nxt}")


def _wakeup(formats, pid):
    return payload(formats["sched_wakeup"], pid=pid, comm=f"t{pid}")


def test_header_page_layout_is_read_from_the_format_file():
    layout = parse_header_page((FIXTURE / "formats" / "header_page").read_text())
    assert layout.page_size == 4096
    with pytest.raises(ValueError):
        parse_header_page("field: u64 timestamp; offset:0; size:8; signed:0;\n"
                          "field: int commit; offset:8; size:4; signed:1;")


def test_every_event_encoding_gives_back_its_time(formats):
    page = PageBuilder(timestamp=1_000_000)
    page.event(5, _switch(formats, 1, 2))                     # short event
    page.event(7, _wakeup(formats, 3), force_long=True)        # type_len 0 with length word
    page.event(MAX := (1 << 27) + 12345, _switch(formats, 2, 1))  # time extend first
    page.padding(3, 16)                                        # discarded event: delta counts
    page.absolute(50_000_000_000)                              # absolute stamp
    page.event(0, _wakeup(formats, 4))
    page.event(2, _switch(formats, 1, 0, state=0x100))
    times, offsets, lengths, info = walk_pages(page.bytes(), 4096, "p", 0)
    t1 = 1_000_005
    expected = [t1, t1 + 7, t1 + 7 + MAX, 50_000_000_000, 50_000_000_002]
    assert times.tolist() == expected
    assert info.tolist() == [[1_000_000, 0, 0]]
    decoder = SchedDecoder(formats)
    data = np.frombuffer(page.bytes(), dtype=np.uint8)
    events, comms, unknown = decoder.decode(data, times, offsets, lengths, 3, "p", 0)
    assert unknown == 0
    assert events.kind.tolist() == [SchedKind.SWITCH, SchedKind.WAKEUP, SchedKind.SWITCH,
                                    SchedKind.WAKEUP, SchedKind.SWITCH]
    assert events.pid.tolist() == [1, 3, 2, 4, 1]
    assert events.other_pid.tolist() == [2, -1, 1, -1, 0]
    assert events.prev_state.tolist() == [1, 0, 1, 0, 0x100]
    assert events.cpu.tolist() == [3] * 5
    assert comms == {1: "t1", 2: "t2", 3: "t3", 4: "t4"}


def test_null_padding_ends_the_page(formats):
    page = PageBuilder(timestamp=10)
    page.event(1, _wakeup(formats, 9))
    page.data += struct.pack("<I", 29)  # padding with delta 0: the rest is unused
    page.data += b"\xff" * 12
    times, *_ = walk_pages(page.bytes(), 4096, "p", 0)
    assert times.tolist() == [11]


def test_missed_events_become_loss_windows_between_pages(formats):
    decoder = SchedDecoder(formats)
    first, second, third = PageBuilder(timestamp=100), PageBuilder(timestamp=500), \
        PageBuilder(timestamp=900)
    first.event(10, _switch(formats, 1, 2))
    second.event(20, _switch(formats, 2, 1))
    second.missed = 42
    third.event(5, _wakeup(formats, 1))
    third.missed = -1
    stream = PageStreamDecoder(decoder, 4096, 0, "cpu0.raw", start_ns=50)
    chunk = stream.decode(first.bytes() + second.bytes(), 0)
    assert [(w.start_ns, w.end_ns, w.count) for w in chunk.losses] == [(110, 520, 42)]
    later = stream.decode(third.bytes(), 8192)
    assert [(w.start_ns, w.end_ns, w.count) for w in later.losses] == [(520, 905, -1)]
    # a flagged first page: the loss starts at the recording start
    fresh = PageStreamDecoder(decoder, 4096, 0, "cpu0.raw", start_ns=50)
    assert [(w.start_ns, w.end_ns) for w in fresh.decode(second.bytes(), 0).losses] == \
        [(50, 520)]


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p[:8] + struct.pack("<Q", 5000) + p[16:], "exceeds the page"),
    (lambda p: p[:8] + struct.pack("<Q", 18) + p[16:], "runs past"),
    (lambda p: p[:16] + struct.pack("<II", 0, 2) + p[24:], "bad event length"),
])
def test_corrupt_pages_name_the_byte_offset(formats, mutate, message):
    page = PageBuilder(timestamp=1)
    page.event(1, _switch(formats, 1, 2))
    bad = mutate(page.bytes())
    with pytest.raises(InputError, match=message) as err:
        walk_pages(bad, 4096, "cpu0.raw", 4096)
    assert err.value.offset is not None and err.value.offset >= 4096


def test_time_going_backwards_on_one_cpu_is_an_error(formats):
    a, b = PageBuilder(timestamp=1000), PageBuilder(timestamp=10)
    a.event(1, _wakeup(formats, 1))
    b.event(1, _wakeup(formats, 2))
    stream = PageStreamDecoder(SchedDecoder(formats), 4096, 0, "cpu0.raw")
    with pytest.raises(InputError, match="backwards"):
        stream.decode(a.bytes() + b.bytes(), 0)


def test_short_payload_is_an_error(formats):
    page = PageBuilder(timestamp=1)
    page.event(1, _switch(formats, 1, 2)[:20])
    times, offsets, lengths, _ = walk_pages(page.bytes(), 4096, "p", 0)
    data = np.frombuffer(page.bytes(), dtype=np.uint8)
    with pytest.raises(InputError, match="too short"):
        SchedDecoder(formats).decode(data, times, offsets, lengths, 0, "p", 0)


def test_real_recording_matches_the_kernels_text_rendering():
    text = _kernel_text()
    source = RecordingSource(str(FIXTURE), ReadOptions())
    events = SchedEvents.concat(list(source.events()))
    expected = kernel_text.parse(text)
    assert len(expected) > 1000
    assert kernel_text.rows_of(events) == expected
    kinds = {row[2] for row in expected}
    assert {"sched_switch", "sched_wakeup", "sched_process_fork"} <= kinds


def test_thread_names_come_from_the_events():
    text = _kernel_text()
    source = RecordingSource(str(FIXTURE), ReadOptions())
    names = source._scan()
    for line in text.splitlines():
        if "sched_process_fork" in line:
            fields = dict(kv.split("=", 1) for kv in line.split(": ", 2)[2].split())
            assert names.comm[int(fields["child_pid"])] == fields["child_comm"]


def _random_streams(rng, n_cpus, n):
    streams = []
    for cpu in range(n_cpus):
        times = np.sort(rng.integers(0, 1000, n))  # many ties across CPUs
        ev = SchedEvents.from_columns(times, np.full(n, cpu), np.zeros(n),
                                      np.arange(n) + cpu * n, np.full(n, -1), np.zeros(n))
        cuts = sorted(rng.choice(np.arange(1, n), size=rng.integers(0, 6), replace=False))
        bounds = [0, *cuts, n]
        streams.append([ev.take(np.arange(a, b)) for a, b in zip(bounds, bounds[1:], strict=False)])
    return streams


@pytest.mark.parametrize("seed", range(20))
def test_merge_is_sorted_complete_and_stable(seed):
    rng = np.random.default_rng(seed)
    streams = _random_streams(rng, int(rng.integers(1, 5)), int(rng.integers(2, 60)))
    merged = SchedEvents.concat(list(merge_streams(iter(s) for s in streams)))
    every = SchedEvents.concat([c for s in streams for c in s])
    assert kernel_text.is_sorted(merged)
    assert sorted(merged.pid.tolist()) == sorted(every.pid.tolist())
    # within one CPU the original order survives
    for cpu in np.unique(every.cpu):
        own = merged.pid[merged.cpu == cpu]
        assert own.tolist() == sorted(own.tolist())
    # at equal times lower CPUs come first
    key = list(zip(merged.time.tolist(), merged.cpu.tolist(), strict=True))
    assert key == sorted(key)


def _copy_fixture(tmp_path):
    target = tmp_path / "rec"
    shutil.copytree(FIXTURE, target)
    return target


def _read_all(path) -> None:
    source = RecordingSource(str(path), ReadOptions())
    for _ in source.batches():
        pass


def test_truncated_cpu_file_is_an_input_error_at_every_cut(tmp_path):
    rec = _copy_fixture(tmp_path)
    raw = rec / "cpu1.raw"
    original = raw.read_bytes()
    rng = random.Random(1)
    cuts = sorted({rng.randrange(1, len(original)) for _ in range(25)} | {4095, 4097})
    for cut in cuts:
        raw.write_bytes(original[:cut])
        if cut % 4096 == 0:
            _read_all(rec)  # whole pages: a shorter, valid recording
            continue
        with pytest.raises(InputError, match="truncated") as err:
            _read_all(rec)
        assert err.value.offset == cut - cut % 4096


def test_bit_flips_never_escape_as_anything_but_input_error(tmp_path):
    rec = _copy_fixture(tmp_path)
    raw = rec / "cpu1.raw"
    original = raw.read_bytes()
    rng = random.Random(7)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        raw.write_bytes(bytes(data))
        try:
            _read_all(rec)
            outcomes["ok"] += 1
        except InputError as err:
            assert str(err).startswith(str(rec))
            outcomes["error"] += 1
    assert outcomes["ok"] + outcomes["error"] == 60


def test_lenient_skips_a_corrupt_page_as_lost_time(formats):
    pages = []
    for i, base in enumerate((100, 1000, 2000)):
        page = PageBuilder(timestamp=base)
        page.event(1, _switch(formats, 1 + i, 2 + i))
        pages.append(page.bytes())
    broken = pages[1][:8] + struct.pack("<Q", 5000) + pages[1][16:]
    stream = PageStreamDecoder(SchedDecoder(formats), 4096, 0, "cpu0.raw", lenient=True)
    chunk = stream.decode(pages[0] + broken + pages[2], 0)
    assert chunk.events.time.tolist() == [101, 2001]
    assert chunk.corrupt_pages == 1
    assert [(w.start_ns, w.end_ns, w.count) for w in chunk.losses] == [(101, 2001, -1)]


def test_lenient_corrupt_last_page_is_lost_until_the_end(formats):
    good, bad = PageBuilder(timestamp=100), PageBuilder(timestamp=200)
    good.event(1, _wakeup(formats, 5))
    bad.event(1, _wakeup(formats, 6))
    broken = bad.bytes()[:16] + struct.pack("<II", 0, 2) + bad.bytes()[24:]
    stream = PageStreamDecoder(SchedDecoder(formats), 4096, 0, "cpu0.raw", lenient=True)
    assert stream.decode(good.bytes() + broken, 0).losses == []
    assert [(w.start_ns, w.end_ns) for w in stream.finish(9000)] == [(101, 9000)]


def test_lenient_reads_a_truncated_recording_with_the_tail_lost(tmp_path):
    rec = _copy_fixture(tmp_path)
    raw = rec / "cpu1.raw"
    raw.write_bytes(raw.read_bytes()[:4096 * 3 + 100])
    source = RecordingSource(str(rec), ReadOptions(lenient=True))
    result = analyze(source)
    assert source.info.anomalies["truncated_bytes"] == 100
    domain = next(d for d in result.domains if d.lifetime_ticks)
    assert domain.states[DomainState.LOST].ticks > 0
    assert_lifetime_from_members(domain, result.end_ticks - result.start_ticks)


def test_lenient_reading_survives_bit_flips(tmp_path):
    rec = _copy_fixture(tmp_path)
    raw = rec / "cpu1.raw"
    original = raw.read_bytes()
    meta = load_meta(str(rec))
    rng = random.Random(11)
    for _ in range(30):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        raw.write_bytes(bytes(data))
        result = analyze(RecordingSource(str(rec), ReadOptions(lenient=True)))
        # the window is the recording's own start and stop, whatever the damage
        assert (result.start_ticks, result.end_ticks) == (meta.start_ns, meta.stop_ns)
        assert_lifetimes(result)
