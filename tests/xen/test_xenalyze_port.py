"""The C emulation of xenalyze (``runstate.analysis.xenalyze``) against the Python reference.

``tests/xen/xenalyze_reference.py`` is the previous record-by-record Python
emulation, itself checked against real xenalyze output.  Cycles, counts, the
domain list, "Total time" and error messages must be identical; the printed
percentiles must be within the documented histogram precision of the exact
self-weighted percentiles of the reference's interval lists.
"""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pytest

from runstate.analysis.xenalyze import PERCENTS, XenalyzeResult, run_xenalyze
from runstate.errors import InputError
from runstate.report.xenalyze_text import render_xenalyze
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.synth import SynthConfig, generate
from tests.xen import xenalyze_reference as reference
from tests.xen.helpers import XEN_DATA, trace_bytes

CONFIGS = [
    SynthConfig(n_pcpus=1, domains=((0, 1), (1, 2)), steps=150),
    SynthConfig(),
    SynthConfig(n_pcpus=4, domains=((0, 1), (3, 4), (7, 2)), steps=300, wrap=0.1),
    SynthConfig(n_pcpus=3, steps=250, loss=0.5, wrap=0.05, offline=0.2),
    SynthConfig(n_pcpus=8, domains=((1, 6), (2, 2), (5, 3)), steps=400, loss=0.3),
    SynthConfig(n_pcpus=5, domains=((0, 2), (4, 5)), steps=300, loss=0.8, offline=0.4),
    SynthConfig(n_pcpus=6, domains=((2, 8),), steps=350, loss=0.2, wrap=0.2, offline=0.1),
    SynthConfig(n_pcpus=2, domains=((0, 1), (1, 1), (2, 1), (3, 1)), steps=200, loss=1.0,
                gap=4_000),
]


def exact_percentile(values: list[int], percent: int) -> int:
    """Smallest length L such that intervals no longer than L make up percent% of the sum."""
    ordered = sorted(values)
    target = percent * sum(ordered)
    cumulative = 0
    for v in ordered:
        cumulative += v
        if 100 * cumulative >= target:
            return v
    return 0


def assert_same(got: XenalyzeResult, want: reference.XenalyzeResult) -> None:
    assert got.total_cycles == want.total_cycles
    assert got.cpu_hz == want.cpu_hz
    assert [d.dom for d in got.domains] == [d.dom for d in want.domains]
    for g, w in zip(got.domains, want.domains, strict=True):
        assert list(g.states) == list(w.states)
        for name, st in g.states.items():
            ref = w.states[name]
            assert (st.cycles, st.count) == (ref.cycles, ref.count), (g.dom, name)
            lengths = ref.intervals.tolist()
            for percent, printed in zip(PERCENTS, st.percentiles, strict=True):
                exact = exact_percentile(lengths, percent)
                assert exact <= printed <= exact + exact // 64, (g.dom, name, percent)
                assert printed in lengths


def run_both(path: str, options: ReadOptions) -> None:
    """Either the same figures or the same one-line error from both."""
    try:
        want = reference.run_xenalyze(path, None, options)
    except InputError as err:
        with pytest.raises(InputError) as info:
            run_xenalyze(path, None, options)
        assert str(info.value) == str(err)
        assert "\n" not in str(info.value)
        return
    assert_same(run_xenalyze(path, None, options), want)


def _trace(seed: int) -> bytes:
    config = CONFIGS[seed % len(CONFIGS)]
    return trace_bytes(generate(seed, config), seed=seed,
                       poll=[80_000, 400_000, 2_000_000][seed % 3],
                       high_water=[256, 2048, 1 << 20][(seed // 3) % 3],
                       early_cpu=seed % 2 == 0, other_every=[0, 0, 5][seed % 3])


@pytest.mark.parametrize("seed", range(160))
def test_random_trace_equals_reference(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "t.trace"
    path.write_bytes(_trace(seed))
    run_both(str(path), ReadOptions(cpu_hz=1))


@pytest.mark.parametrize("seed", range(40))
def test_truncated_trace_equals_reference(tmp_path: Path, seed: int) -> None:
    data = _trace(seed)
    cut = random.Random(seed).randrange(13, len(data))
    path = tmp_path / "t.trace"
    path.write_bytes(data[:cut])
    run_both(str(path), ReadOptions(cpu_hz=1))


def _windows(data: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off + 12 <= len(data):
        _, pcpu, size = struct.unpack_from("<IiI", data, off)
        out.append((pcpu, data[off + 12:off + 12 + size]))
        off += 12 + size
    return out


def _relayout(data: bytes, rng: random.Random) -> bytes:
    """Same per-pcpu streams, other window layout: adjacent windows of different pcpus
    swapped, empty windows (also of pcpus without records) inserted, windows split."""
    wins = _windows(data)
    for _ in range(rng.randint(0, 3 * len(wins))):
        i = rng.randrange(max(1, len(wins) - 1))
        if i + 1 < len(wins) and wins[i][0] != wins[i + 1][0]:
            wins[i], wins[i + 1] = wins[i + 1], wins[i]
    for _ in range(rng.randint(0, 6)):
        wins.insert(rng.randrange(len(wins) + 1), (rng.randrange(12), b""))
    out = bytearray()
    for pcpu, body in wins:
        if len(body) >= 32 and rng.random() < 0.1:
            cut = 0  # split at a record boundary
            while cut < len(body) // 2:
                hdr = struct.unpack_from("<I", body, cut)[0]
                cut += 4 + 8 * (hdr >> 31) + 4 * ((hdr >> 28) & 7)
            parts = [body[:cut], body[cut:]]
        else:
            parts = [body]
        for part in parts:
            out += struct.pack("<IiI", 0x2001F003, pcpu, len(part)) + part
    return bytes(out)


@pytest.mark.parametrize("seed", range(120))
def test_relaid_out_trace_equals_reference(tmp_path: Path, seed: int) -> None:
    """xenalyze's pcpu discovery and merge quirks depend on the window layout."""
    path = tmp_path / "t.trace"
    path.write_bytes(_relayout(_trace(seed), random.Random(seed)))
    run_both(str(path), ReadOptions(cpu_hz=1))


@pytest.mark.parametrize("seed", range(120))
def test_corrupt_trace_equals_reference(tmp_path: Path, seed: int) -> None:
    """Damaged bytes: same error in strict mode, same skipping with --lenient."""
    rng = random.Random(seed)
    data = bytearray(_trace(seed))
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(data))
        data[at] = rng.choice((0x00, 0xff, 0x20, 0x80, rng.randrange(256)))
    path = tmp_path / "t.trace"
    path.write_bytes(bytes(data))
    run_both(str(path), ReadOptions(cpu_hz=1))
    run_both(str(path), ReadOptions(cpu_hz=1, lenient=True))


@pytest.mark.parametrize("case", sorted(p.stem for p in XEN_DATA.glob("*.trace")))
def test_xen_vectors_equal_reference(case: str) -> None:
    run_both(str(XEN_DATA / f"{case}.trace"), ReadOptions(cpu_hz=2.4e9))


def test_stdin_is_spooled_and_gives_the_same(tmp_path: Path) -> None:
    data = _trace(3)
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    a = run_xenalyze(str(path), None, ReadOptions(cpu_hz=1))
    b = run_xenalyze("-", io.BytesIO(data), ReadOptions(cpu_hz=1))
    assert render_xenalyze(a) == render_xenalyze(b)
    with pytest.raises(InputError, match="empty input"):
        run_xenalyze("-", io.BytesIO(b""), ReadOptions(cpu_hz=1))


def test_no_records_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    path.write_bytes(b"\x03\xf0\x01\x20" + b"\x00" * 8)  # one empty window of pcpu 0
    with pytest.raises(InputError, match="no trace records"):
        run_xenalyze(str(path), None, ReadOptions(cpu_hz=1))
    with pytest.raises(InputError):
        run_xenalyze(str(tmp_path / "missing"), None, ReadOptions(cpu_hz=1))


def test_result_keeps_no_interval_lists() -> None:
    """The per-state figures are fixed-size, whatever the number of intervals."""
    from dataclasses import fields

    from runstate.analysis.xenalyze import XenalyzeState

    assert [f.name for f in fields(XenalyzeState)] == ["cycles", "count", "percentiles"]


def test_named_pipe_is_spooled(tmp_path: Path) -> None:
    import os
    import threading

    data = _trace(5)
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        got = run_xenalyze(str(fifo), None, ReadOptions(cpu_hz=1))
    finally:
        writer.join()
    assert render_xenalyze(got) == render_xenalyze(run_xenalyze(str(path), None,
                                                                ReadOptions(cpu_hz=1)))
