"""Random scheduler-consistent traces through the writer, reader and engine vs the model."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from runstate.analysis.pipeline import analyze
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.reader import XentraceSource
from runstate.sources.xentrace.synth import SynthConfig, generate, write
from tests.xen.helpers import cycles, run_exact, trace_bytes
from tests.xen.model import expected

CONFIGS = [
    SynthConfig(),
    SynthConfig(n_pcpus=4, domains=((0, 1), (3, 4), (7, 2)), steps=300, wrap=0.1),
    SynthConfig(n_pcpus=3, steps=250, loss=0.5, wrap=0.05, offline=0.2),
    SynthConfig(n_pcpus=8, domains=((1, 6), (2, 2), (5, 3)), steps=400, loss=0.3),
]


@pytest.mark.parametrize("seed", range(40))
def test_random_trace_matches_model(tmp_path: Path, seed: int) -> None:
    config = CONFIGS[seed % len(CONFIGS)]
    sc = generate(seed, config)
    path = tmp_path / "t.trace"
    path.write_bytes(trace_bytes(sc, seed=seed, poll=[80_000, 400_000, 2_000_000][seed % 3],
                                 high_water=[256, 2048, 1 << 20][seed % 3],
                                 early_cpu=seed % 2 == 0))
    result = run_exact(str(path))
    assert cycles(result) == expected(sc)


class _Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like a pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        k = self._step if n < 0 else min(n, self._step)
        out = self._data[self._pos:self._pos + k]
        self._pos += len(out)
        return out

    def read(self, n: int = -1) -> bytes:
        return self.read1(n)


@pytest.mark.parametrize("seed", range(8))
def test_stream_equals_one_pass_file(tmp_path: Path, seed: int) -> None:
    """stdin in small pieces gives exactly what one pass over the file gives."""
    config = CONFIGS[seed % 2]
    sc = generate(seed, SynthConfig(n_pcpus=config.n_pcpus, domains=config.domains,
                                    steps=config.steps, wrap=config.wrap))
    data = trace_bytes(sc, seed=seed, poll=200_000, high_water=512)
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    opts = ReadOptions(cpu_hz=2.4e9, chunk_rows=1024)
    file_result = analyze(XentraceSource(str(path), None, opts), one_pass=True)
    src = XentraceSource("-", _Trickle(data, 7 + seed * 13), opts)  # type: ignore[arg-type]
    assert not src.rereadable
    stream_result = analyze(src)
    assert cycles(stream_result) == cycles(file_result)
    assert "late_records" not in src.info.anomalies


def test_small_chunks_same_result(tmp_path: Path) -> None:
    sc = generate(7, CONFIGS[3])
    path = tmp_path / "t.trace"
    path.write_bytes(trace_bytes(sc, seed=7, poll=100_000, high_water=128))
    assert cycles(run_exact(str(path), chunk_rows=1024)) == expected(sc)
    write(sc, io.BytesIO())
