"""Reading a xentrace file ahead of its analysis (``registry.prefetch``).

A prefetched file gives the result the same analysis gives without it, and
the reader takes over the prefetched job only for the very file the job read:
a file replaced or rewritten since, or other options, are read afresh.  The
hook itself loads no numpy, fails on nothing, and starts nothing for what it
cannot read ahead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from runstate.analysis.pipeline import TraceWindow, analyze
from runstate.engine.results import RunResult
from runstate.sources import registry
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace import prefetch
from runstate.sources.xentrace.synth import SynthConfig, generate
from tests.xen.helpers import trace_bytes

OPTIONS = ReadOptions(cpu_hz=2.4e9)


def write_trace(path: Path, seed: int) -> Path:
    sc = generate(seed, SynthConfig(n_pcpus=3, steps=1500, domains=((1, 2), (4, 3))))
    path.write_bytes(trace_bytes(sc, seed=seed, poll=50_000, other_every=2))
    return path


def fresh(path: Path, window: TraceWindow | None = None, **opts: object) -> RunResult:
    """The analysis without a prefetch."""
    assert str(path) not in prefetch._started
    source = registry.open_source(str(path), ReadOptions(cpu_hz=2.4e9, **opts))  # type: ignore[arg-type]
    return analyze(source) if window is None else analyze(source, window)


def prefetched(path: Path, whole: bool, window: TraceWindow | None = None,
               **opts: object) -> RunResult:
    registry.prefetch(str(path), OPTIONS, whole=whole)
    assert str(path) in prefetch._started
    source = registry.open_source(str(path), ReadOptions(cpu_hz=2.4e9, **opts))  # type: ignore[arg-type]
    result = analyze(source) if window is None else analyze(source, window)
    assert str(path) not in prefetch._started, "the reader took the job over, or dropped it"
    return result


@pytest.mark.parametrize("whole", [True, False])
def test_a_prefetched_file_gives_the_result_without_a_prefetch(tmp_path: Path,
                                                                whole: bool) -> None:
    path = write_trace(tmp_path / "t.trace", 1)
    assert prefetched(path, whole) == fresh(path)


def test_a_prefetch_for_the_whole_trace_serves_a_window_all_the_same(tmp_path: Path) -> None:
    """The job accounted every row, the window needs batches: its first pass serves."""
    path = write_trace(tmp_path / "t.trace", 2)
    window = TraceWindow(Fraction(1, 1000), Fraction(3, 1000))
    assert prefetched(path, True, window) == fresh(path, window)


def changed(path: Path, change: str, tmp_path: Path) -> None:
    """Another file at the path, other bytes in the same file, or only a newer
    modification time."""
    if change == "replaced":
        write_trace(tmp_path / "new.trace", 4).replace(path)
    elif change == "rewritten":
        data = write_trace(tmp_path / "new.trace", 4).read_bytes()
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
    else:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))


@pytest.mark.parametrize("change", ["replaced", "rewritten", "touched"])
def test_a_job_is_taken_over_only_for_the_file_it_read(tmp_path: Path, change: str) -> None:
    path = write_trace(tmp_path / "t.trace", 3)
    registry.prefetch(str(path), OPTIONS, whole=True)
    assert prefetch.claim(str(path), False) is not None
    registry.prefetch(str(path), OPTIONS, whole=True)
    prefetch._started[str(path)].job.account()  # its work is over: the file may change
    changed(path, change, tmp_path)
    assert prefetch.claim(str(path), False) is None
    assert str(path) not in prefetch._started


@pytest.mark.parametrize("change", ["replaced", "rewritten"])
def test_a_file_changed_after_its_prefetch_is_read_afresh(tmp_path: Path, change: str) -> None:
    path = write_trace(tmp_path / "t.trace", 3)
    old = fresh(path)
    registry.prefetch(str(path), OPTIONS, whole=True)
    prefetch._started[str(path)].job.account()
    changed(path, change, tmp_path)
    got = analyze(registry.open_source(str(path), OPTIONS))
    assert str(path) not in prefetch._started
    assert got == fresh(path) != old


def test_a_prefetch_with_other_options_is_not_taken(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.trace", 5)
    registry.prefetch(str(path), OPTIONS, whole=True)  # without --lenient
    assert prefetched_lenient(path) == fresh(path, lenient=True)


def prefetched_lenient(path: Path) -> RunResult:
    source = registry.open_source(str(path), ReadOptions(cpu_hz=2.4e9, lenient=True))
    result = analyze(source)
    assert str(path) not in prefetch._started
    return result


@pytest.mark.parametrize("what", ["missing", "empty", "csv", "directory", "stdin"])
def test_what_cannot_be_read_ahead_starts_nothing_and_fails_nothing(tmp_path: Path,
                                                                     what: str) -> None:
    path = {"missing": tmp_path / "none.trace", "empty": tmp_path / "empty.trace",
            "csv": tmp_path / "e.csv", "directory": tmp_path, "stdin": Path("-")}[what]
    if what == "empty":
        path.write_bytes(b"")
    elif what == "csv":
        path.write_text("time,domain,member,old,new\n1,a,0,running,blocked\n")
    registry.prefetch(str(path), OPTIONS, whole=True)
    assert prefetch._started == {}


def test_a_prefetch_with_a_named_format_that_does_not_fit_is_dropped(tmp_path: Path) -> None:
    """--input-format xentrace on bytes that are no trace: the job finds nothing, and
    the reader reports the file as it would have."""
    path = tmp_path / "t.trace"
    path.write_bytes(b"\x03\xf0\x01\x20" + bytes(64))
    registry.prefetch(str(path), OPTIONS, "xentrace", whole=True)
    with pytest.raises(Exception) as raised:
        analyze(registry.open_source(str(path), OPTIONS, "xentrace"))
    assert str(path) not in prefetch._started
    assert "t.trace" in str(raised.value)


PROBE = """
import json, sys
from runstate.sources.base import ReadOptions
from runstate.sources.registry import prefetch
from runstate.sources.xentrace import prefetch as ahead
prefetch(sys.argv[1], ReadOptions(cpu_hz=2.4e9), whole=True)
job = ahead._started[sys.argv[1]].job
print(json.dumps({"numpy": "numpy" in sys.modules,
                  "fast": job.scanned() == ahead._job.SCAN_DONE}))
"""


def test_a_prefetch_loads_no_numpy(tmp_path: Path) -> None:
    """It starts while the command still loads numpy: it must not load it itself."""
    path = write_trace(tmp_path / "t.trace", 6)
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == {"numpy": False, "fast": True}


def test_a_file_read_ahead_then_changed_is_sniffed_again(tmp_path: Path) -> None:
    """The reader the first bytes showed is taken again only for the same bytes."""
    path = write_trace(tmp_path / "t.trace", 7)
    registry.prefetch(str(path), OPTIONS, whole=True)
    assert registry.open_source(str(path), OPTIONS).info.format == "xentrace"
    prefetch.discard(str(path))
    path.write_text("time,domain,member,old,new\n1,a,0,running,blocked\n2,a,0,blocked,running\n")
    assert registry.open_source(str(path), OPTIONS).info.format == "csv"
