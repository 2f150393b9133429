"""Broken xentrace input: one-line InputError naming the byte offset, or lenient counting."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from runstate.analysis.pipeline import analyze
from runstate.errors import InputError
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.reader import XentraceSource, sniff_windows
from runstate.sources.xentrace.synth import SynthConfig, generate
from runstate.sources.xentrace.writer import XentraceWriter
from tests.xen.helpers import cycles, trace_bytes


def _small() -> bytes:
    return trace_bytes(generate(3, SynthConfig(steps=40, wrap=0.2)), seed=3, poll=200_000)


def _run(tmp_path: Path, data: bytes, **opts: object):
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    src = XentraceSource(str(path), None, ReadOptions(cpu_hz=2.4e9, **opts))  # type: ignore[arg-type]
    return src, analyze(src)


def _record_offsets(data: bytes) -> list[int]:
    """Offsets of every window header and record."""
    out, off = [], 0
    while off + 12 <= len(data):
        size = struct.unpack_from("<I", data, off + 8)[0]
        out.append(off)
        q = off + 12
        while q < off + 12 + size:
            out.append(q)
            hdr = struct.unpack_from("<I", data, q)[0]
            q += 4 + 8 * (hdr >> 31) + 4 * ((hdr >> 28) & 7)
        off += 12 + size
    return out


def test_truncation_at_every_record_boundary_and_inside(tmp_path: Path) -> None:
    data = _small()
    full = cycles(_run(tmp_path, data)[1])
    assert full
    cuts = sorted({c for o in _record_offsets(data) for c in (o, o + 2, o + 7)} - {0})
    for cut in cuts:
        if cut >= len(data):
            continue
        try:
            src, _ = _run(tmp_path, data[:cut])
        except InputError as err:
            assert "t.trace" in str(err) and "\n" not in str(err)
            continue
        inside = cut not in _window_starts(data)
        assert ("truncated_final_window" in src.info.anomalies) == inside, cut


def _window_starts(data: bytes) -> set[int]:
    starts, off = set(), 0
    while off + 12 <= len(data):
        starts.add(off)
        off += 12 + struct.unpack_from("<I", data, off + 8)[0]
    starts.add(off)
    return starts


def test_bit_flips_never_escape_as_other_errors(tmp_path: Path) -> None:
    data = bytearray(_small())
    for pos in range(0, len(data), 5):
        for bit in (0, 7):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            for lenient in (False, True):
                try:
                    _run(tmp_path, bytes(flipped), lenient=lenient)
                except InputError as err:
                    assert "\n" not in str(err)


def _window(pcpu: int, body: bytes, size: int | None = None) -> bytes:
    return struct.pack("<IiI", 0x2001F003, pcpu, len(body) if size is None else size) + body


def _good_records() -> bytes:
    out = io.BytesIO()
    w = XentraceWriter(out)
    w.runstate_change(0, 1000, 1, 0, 1, 0)
    w.runstate_change(0, 2000, 1, 0, 0, 2)
    w.close()
    return out.getvalue()[12:]


def test_not_one_hot_class(tmp_path: Path) -> None:
    bad = struct.pack("<IQI", (1 << 31) | (1 << 28) | 0x00031001, 1500, 0)
    body = _good_records()
    data = _window(0, body[:16] + bad + body[16:])
    with pytest.raises(InputError) as info:
        _run(tmp_path, data)
    assert "one-hot" in str(info.value) and "byte offset 28" in str(info.value)
    src, result = _run(tmp_path, data, lenient=True)
    assert src.info.anomalies["corrupt_records_skipped"] == 1
    assert sum(st.ticks for d in result.domains for st in d.states.values()) == 1000


def test_lost_record_tsc_not_after_first_tsc(tmp_path: Path) -> None:
    body = _good_records()
    lost = struct.pack("<IQIIII", (1 << 31) | (4 << 28) | 0x0001F001, 1500, 3, 1, 1600, 0)
    data = _window(0, body[:16] + lost + body[16:])
    with pytest.raises(InputError) as info:
        _run(tmp_path, data)
    assert "byte offset 28" in str(info.value) and "first_tsc 1600" in str(info.value)
    src, _ = _run(tmp_path, data, lenient=True)
    assert src.info.anomalies["corrupt_records_skipped"] == 1


@pytest.mark.parametrize("size", [5, 1 << 31])
def test_impossible_window_size(tmp_path: Path, size: int) -> None:
    body = _good_records()
    data = _window(0, body) + _window(1, body, size=size) + _window(0, body)
    with pytest.raises(InputError) as info:
        _run(tmp_path, data)
    assert "impossible window size" in str(info.value)
    assert "byte offset 44" in str(info.value)


def test_broken_header_lenient_resyncs(tmp_path: Path) -> None:
    body = _good_records()
    second = _window(1, struct.pack("<IQI", (1 << 31) | (1 << 28) | 0x00021021, 3000, 2 << 16))
    data = _window(0, body) + b"\x00\x11\x22\x33" + second
    with pytest.raises(InputError) as info:
        _run(tmp_path, data)
    assert "byte offset 44" in str(info.value) and "0x33221100" in str(info.value)
    src, result = _run(tmp_path, data, lenient=True)
    assert src.info.anomalies["window_headers_resynced"] == 1
    assert {d.key for d in result.domains} == {"1", "2"}


def test_tsc_backwards_within_pcpu(tmp_path: Path) -> None:
    w1 = _window(0, struct.pack("<IQI", (1 << 31) | (1 << 28) | 0x00021010, 5000, 1 << 16))
    w2 = _window(0, struct.pack("<IQI", (1 << 31) | (1 << 28) | 0x00021001, 4000, 1 << 16))
    with pytest.raises(InputError) as info:
        _run(tmp_path, w1 + w2)
    assert "backwards" in str(info.value) and "byte offset 40" in str(info.value)


def test_sniff() -> None:
    assert sniff_windows(_small()[:4096])
    assert not sniff_windows(b"time_ns,domain,member,old_state,new_state\n")
    assert not sniff_windows(b"")
    assert not sniff_windows(struct.pack("<IiI", 0x2001F003, 0, 6) + b"\0" * 8)
    # a window whose first record has a class that is not one-hot
    assert not sniff_windows(_window(0, struct.pack("<IQI", (1 << 31) | (1 << 28) | 0x00031001,
                                                    1, 0)))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        _run(tmp_path, b"")
    assert "empty" in str(info.value)


def test_xenalyze_mode_bad_input_is_input_error(tmp_path: Path) -> None:
    from runstate.analysis.xenalyze import run_xenalyze

    body = _good_records()
    data = _window(0, body) + b"\x00\x11\x22\x33" + _window(0, body[:0])
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    with pytest.raises(InputError):
        run_xenalyze(str(path), None, ReadOptions(cpu_hz=1))
    run_xenalyze(str(path), None, ReadOptions(cpu_hz=1, lenient=True))
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        try:
            run_xenalyze(str(path), None, ReadOptions(cpu_hz=1))
        except InputError as err:
            assert "\n" not in str(err)
