"""Seed inputs for every reader: the repository's test data, the bundled samples
and small generated traces.

``SEEDS`` maps a reader's format name to its seeds; ``seeds_for`` fails for a
reader that has none, so a reader added to the registry is fuzzed or the
fuzz test says why not.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runstate.sources.xentrace.synth import SynthConfig, generate, write

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SAMPLES = ROOT / "src" / "runstate" / "data"


@dataclass(frozen=True)
class Seed:
    """One seed input: a file, or a directory whose ``targets`` get mutated."""

    name: str
    make: Callable[[Path], None]
    #: files (relative) that mutants edit; empty for a single-file seed
    targets: tuple[str, ...] = ()
    #: extra report options worth trying with this seed
    variants: tuple[tuple[str, ...], ...] = field(default=((),))

    def materialize(self, into: Path) -> Path:
        path = into / self.name
        if not path.exists():
            into.mkdir(parents=True, exist_ok=True)
            self.make(path)
        return path


def _copy(src: Path) -> Callable[[Path], None]:
    def make(dst: Path) -> None:
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    return make


def _xen_synth(seed: int, config: SynthConfig) -> Callable[[Path], None]:
    def make(dst: Path) -> None:
        buf = io.BytesIO()
        write(generate(seed, config), buf, seed=seed, other_every=17)
        dst.write_bytes(buf.getvalue())
    return make


def _jsonl_from_csv(src: Path) -> Callable[[Path], None]:
    def make(dst: Path) -> None:
        lines = src.read_text().splitlines()
        keys = lines[0].split(",")
        rows = [dict(zip(keys, line.split(","), strict=True)) for line in lines[1:] if line]
        for row in rows:
            row["time_ns"] = int(row["time_ns"])  # type: ignore[assignment]
        dst.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return make


_XEN_VARIANTS = ((), ("--semantics", "xenalyze"), ("--lenient",), ("--one-pass",),
                 ("--interval", "1ms"))
_LINUX_VARIANTS = ((), ("--lenient",), ("--interval", "100ms"))
_RECORDING = DATA / "linux" / "tracefs" / "rec"

SEEDS: dict[str, list[Seed]] = {
    "xentrace": [
        Seed("c07_offline.trace", _copy(DATA / "xen" / "c07_offline.trace"),
             variants=_XEN_VARIANTS),
        Seed("c04_lost_small.trace", _copy(DATA / "xen" / "c04_lost_small.trace"),
             variants=_XEN_VARIANTS),
        Seed("synth_lossy.trace",
             _xen_synth(3, SynthConfig(n_pcpus=3, steps=120, loss=0.6, wrap=0.05)),
             variants=_XEN_VARIANTS),
    ],
    "tracefs-recording": [
        Seed("rec", _copy(_RECORDING),
             targets=("cpu0.raw", "cpu1.raw", "meta.json", "formats/header_page",
                      "formats/header_event", "formats/sched/sched_switch/format"),
             variants=_LINUX_VARIANTS),
    ],
    "perf-data": [
        Seed("busy4.perf.data", _copy(DATA / "linux" / "busy4.perf.data"),
             variants=_LINUX_VARIANTS),
        Seed("pinned2.perf.data", _copy(DATA / "linux" / "pinned2.perf.data")),
    ],
    "perf-script": [
        Seed("busy4.perf-script-pid.txt", _copy(DATA / "linux" / "busy4.perf-script-pid.txt"),
             variants=_LINUX_VARIANTS),
        Seed("busy4.perf-script.txt", _copy(DATA / "linux" / "busy4.perf-script.txt"),
             variants=(("--group", "thread"),)),
        Seed("vm-handmade.perf-script.txt",
             _copy(DATA / "linux" / "vm-handmade.perf-script.txt")),
    ],
    "ftrace-text": [
        Seed("sleepy2.ftrace.txt", _copy(DATA / "linux" / "sleepy2.ftrace.txt"),
             variants=_LINUX_VARIANTS),
        Seed("plugin-handmade.trace-cmd.txt",
             _copy(DATA / "linux" / "plugin-handmade.trace-cmd.txt")),
    ],
    "jsonl": [
        Seed("two_vms.jsonl", _jsonl_from_csv(DATA / "core" / "two_vms.csv")),
        Seed("sample.jsonl", _jsonl_from_csv(SAMPLES / "sample.csv"),
             variants=((), ("--lenient",), ("--interval", "100ms"))),
    ],
    "csv": [
        Seed("two_vms.csv", _copy(DATA / "core" / "two_vms.csv")),
        Seed("sample.csv", _copy(SAMPLES / "sample.csv"),
             variants=((), ("--lenient",), ("--interval", "100ms"))),
    ],
}


def seeds_for(reader: str) -> list[Seed]:
    """The seeds of a reader (KeyError names a reader without any)."""
    try:
        return SEEDS[reader]
    except KeyError:
        raise KeyError(f"no fuzz seeds for reader {reader!r}: add some to tests/fuzz/corpus.py") \
            from None
