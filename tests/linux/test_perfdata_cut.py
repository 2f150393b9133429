"""A perf.data file cut short (``head -c``, a killed perf) ends where its data is complete.

The cut copy must hold exactly the full file's events up to the time it reports as its
end, none after it, and say where its data stops; a cut that leaves no complete span
is a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runstate.sources.base import ReadOptions
from runstate.sources.linux.perfdata import PerfDataSource
from runstate.sources.linux.schedevents import SchedEvents
from tests.conftest import DATA

LINUX = DATA / "linux"
FIELDS = ("time", "cpu", "kind", "pid", "other_pid", "prev_state")


def _events(path: Path) -> tuple[PerfDataSource, SchedEvents]:
    """The decoded sample stream in time order, before the sched conversion (whose
    switch-chain repairs may use evidence after the cut, so they are not compared)."""
    source = PerfDataSource(str(path), ReadOptions(group="process"))
    items = [i for i in source._items() if isinstance(i, SchedEvents)]
    return source, SchedEvents.concat(items)


def _sorted(ev: SchedEvents, keep: np.ndarray) -> list[np.ndarray]:
    order = np.lexsort((ev.other_pid[keep], ev.pid[keep], ev.cpu[keep], ev.time[keep]))
    return [getattr(ev, f)[keep][order] for f in FIELDS]


@pytest.mark.parametrize(("name", "fraction"), [
    ("lossy.perf.data", 0.2), ("lossy.perf.data", 0.5), ("lossy.perf.data", 0.85),
    ("busy4.perf.data", 0.7), ("sleepy3.perf.data", 0.85),
])
def test_cut_copy_holds_exactly_the_events_up_to_its_end(tmp_path, name, fraction):
    blob = (LINUX / name).read_bytes()
    cut = tmp_path / "cut.data"
    cut.write_bytes(blob[:int(len(blob) * fraction)])
    _, full = _events(LINUX / name)
    source, part = _events(cut)
    end = source.info.end_ticks
    assert end is not None and full.time[0] < end < full.time[-1]
    within = full.time <= end
    got = _sorted(part, np.ones(len(part), bool))
    want = _sorted(full, within)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    # the events after the end were in the file but are left out, and counted
    assert source._after_cut > 0


def test_cut_report_ends_at_the_complete_data_and_says_where_it_stops(run_cli, tmp_path):
    blob = (LINUX / "lossy.perf.data").read_bytes()
    cut = tmp_path / "cut.data"
    size = len(blob) // 2
    cut.write_bytes(blob[:size])
    source, part = _events(cut)
    result = run_cli("report", str(cut), "--group", "process", "--format", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    end = doc["window"]["end_ns"]
    assert end == source.info.end_ticks
    full = json.loads(run_cli("report", str(LINUX / "lossy.perf.data"), "--group",
                              "process", "--format", "json").out)
    assert end < full["window"]["end_ns"]
    # nothing after the cut is counted: no domain lives past the reported end
    assert all(d["lifetime_ns"] <= end - doc["window"]["start_ns"] for d in doc["domains"])
    (note,) = [n for n in doc["source"]["notes"] if "data stops" in n]
    assert f"{cut}: the data stops at byte {size}" in note
    assert doc["anomalies"]["events_after_cut"] > 0


def test_cut_before_any_complete_span_is_a_one_line_error(run_cli, tmp_path):
    # busy4 holds one second of CPU 0's samples and then CPU 1's: cut inside CPU 0's part,
    # nothing at all of CPU 1 is left, so no span is known complete
    blob = (LINUX / "busy4.perf.data").read_bytes()
    cut = tmp_path / "cut.data"
    cut.write_bytes(blob[:len(blob) // 2])
    result = run_cli("report", str(cut), "--group", "process")
    assert result.code == 1
    assert result.err.startswith(f"runstate: error: {cut}: byte offset {len(blob) // 2}: ")
    assert "no span of it is known complete" in result.err
    assert len(result.err.strip().splitlines()) == 1
