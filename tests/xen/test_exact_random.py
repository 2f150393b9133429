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


def test_stream_yields_before_end_of_input() -> None:
    """stdin is read incrementally: batches come out while input is still unread."""
    sc = generate(11, SynthConfig(n_pcpus=2, steps=3000))
    data = trace_bytes(sc, seed=11, poll=200_000, high_water=4096)
    stream = _Trickle(data, 1000)
    src = XentraceSource("-", stream, ReadOptions(cpu_hz=2.4e9))  # type: ignore[arg-type]
    positions = [stream._pos for _ in src.batches()]
    assert len(positions) > 3
    assert positions[0] < len(data) // 2


def test_idle_domain_expects_one_vcpu_per_pcpu(tmp_path: Path) -> None:
    sc = generate(5, SynthConfig(n_pcpus=4, steps=300))
    path = tmp_path / "t.trace"
    path.write_bytes(trace_bytes(sc, seed=5))
    idle = [d for d in run_exact(str(path)).domains if d.key == "32767"][0]
    assert idle.members_expected == 4
    assert idle.tags == {"kind": "host-idle"}


def _varied(seed: int) -> tuple[SynthConfig, dict[str, int | bool]]:
    """A random shape: pcpus, domains, losses, wraps, offline vCPUs, window layout."""
    import random

    rng = random.Random(seed)
    doms = tuple((d, rng.randint(1, 5)) for d in rng.sample(range(40), rng.randint(1, 4)))
    config = SynthConfig(n_pcpus=rng.randint(1, 8), domains=doms, steps=rng.randint(20, 400),
                         loss=rng.choice([0, 0.3, 0.8]), wrap=rng.choice([0, 0.1]),
                         offline=rng.choice([0, 0.1, 0.3]))
    layout: dict[str, int | bool] = {
        "seed": seed, "poll": rng.choice([50_000, 400_000, 5_000_000]),
        "high_water": rng.choice([128, 2048, 1 << 20]), "early_cpu": rng.random() < 0.5}
    return config, layout


@pytest.mark.parametrize("seed", range(1000, 1060))
def test_varied_random_traces(tmp_path: Path, seed: int) -> None:
    config, layout = _varied(seed)
    sc = generate(seed, config)
    path = tmp_path / "t.trace"
    path.write_bytes(trace_bytes(sc, **layout))
    assert cycles(run_exact(str(path))) == expected(sc)


@pytest.mark.slow
def test_thousand_varied_random_traces(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    for seed in range(2000, 3000):
        config, layout = _varied(seed)
        sc = generate(seed, config)
        path.write_bytes(trace_bytes(sc, **layout))
        assert cycles(run_exact(str(path))) == expected(sc), seed
