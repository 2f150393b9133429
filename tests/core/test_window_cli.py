"""``--from/--to`` through the CLI, for every reader: a window reports what the matching
``--interval`` row reports, parts outside the trace are clipped with a note, a window
wholly outside is a one-line error naming the trace's span."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runstate
from tests.conftest import DATA, XEN_DATA

PACKAGE_DATA = Path(runstate.__file__).parent / "data"
LINUX = DATA / "linux"

#: reader -> (file, interval, extra flags); jsonl is derived from the CSV fixture
CASES = {
    "xentrace": (XEN_DATA / "c10_big.trace", "50ms", ["--cpu-hz", "2.4G"]),
    "tracefs-recording": (PACKAGE_DATA / "qemu-demo.rec", "1s", []),
    "perf-data": (LINUX / "pinned2.perf.data", "100ms", ["--group", "process"]),
    "perf-script": (LINUX / "pinned2.perf-script-pid.txt", "100ms", ["--group", "process"]),
    "ftrace-text": (LINUX / "sleepy2.ftrace.txt", "50ms", ["--group", "process"]),
    "csv": (DATA / "core" / "two_vms.csv", "5us", []),
    "jsonl": (None, "5us", []),
}


def _path(reader: str, tmp_path: Path) -> str:
    given = CASES[reader][0]
    if given is not None:
        return str(given)
    path = tmp_path / "two_vms.jsonl"
    with open(DATA / "core" / "two_vms.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    path.write_text("".join(json.dumps({**r, "time_ns": int(r["time_ns"])}) + "\n"
                            for r in rows))
    return str(path)


def _seconds(ns: int) -> str:
    """ns as an exact decimal number of seconds (what a user would type)."""
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _report(run_cli: Callable[..., Any], *argv: str) -> dict[str, Any]:
    result = run_cli("report", *argv, "--format", "json")
    assert result.code == 0, result.err
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def _alive(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {d["domain"]: {s: v["ns"] for s, v in d["states"].items()}
            for d in doc["domains"] + doc["host_idle"] if d["lifetime_ns"]}


@pytest.mark.parametrize("reader", list(CASES))
def test_window_equals_the_interval_row_of_the_same_span(run_cli, tmp_path, reader):
    path = _path(reader, tmp_path)
    _, interval, flags = CASES[reader]
    whole = _report(run_cli, path, "--interval", interval, *flags)
    assert whole["source"]["format"] == reader
    rows = whole["intervals"]
    assert len(rows) >= 3
    # the last row ends at the trace's last record, which a TSC trace places between two
    # ns: ask for 1 ns more, which is clipped to the trace (and says so)
    for row, beyond in ((rows[len(rows) // 2], 0), (rows[-1], 1)):
        part = _report(run_cli, path, "--from", _seconds(row["start_ns"]),
                       "--to", _seconds(row["end_ns"] + beyond), *flags)
        assert (part["window"]["start_ns"], part["window"]["end_ns"]) == \
            (row["start_ns"], row["end_ns"])
        assert _alive(part) == {d["domain"]: {s: v["ns"] for s, v in d["states"].items()}
                                for d in row["domains"]}
        assert any("clipped" in n for n in part["source"]["notes"]) == bool(beyond)


@pytest.mark.parametrize("reader", ["xentrace", "tracefs-recording", "perf-data", "csv"])
def test_window_wholly_outside_is_an_error_giving_the_span(run_cli, tmp_path, reader):
    path = _path(reader, tmp_path)
    whole = _report(run_cli, path, *CASES[reader][2])
    end = whole["window"]["end_ns"]
    result = run_cli("report", path, "--from", _seconds(end + 10**9),
                     "--to", _seconds(end + 2 * 10**9), *CASES[reader][2])
    assert result.code == 1
    (line,) = [x for x in result.err.splitlines() if "error" in x]
    assert line.startswith("runstate: error: ")
    span = f"spans {_seconds(whole['window']['start_ns']).rstrip('0').rstrip('.')} .. "
    assert span in line, line
    assert "Traceback" not in result.err


def test_window_partly_outside_is_clipped_with_a_note(run_cli):
    path = str(XEN_DATA / "c10_big.trace")
    whole = _report(run_cli, path, "--cpu-hz", "2.4G")
    part = _report(run_cli, path, "--cpu-hz", "2.4G", "--from", "0.2", "--to", "5")
    assert part["window"]["start_ns"] == 200_000_000
    assert part["window"]["end_ns"] == whole["window"]["end_ns"]
    (note,) = [n for n in part["source"]["notes"] if "clipped" in n]
    assert "0.2 .. 5 s" in note
    table = run_cli("report", path, "--cpu-hz", "2.4G", "--from", "0.2", "--to", "5")
    assert "note: window 0.2 .. 5 s reaches outside the trace" in table.out


@pytest.mark.parametrize("argv", [["--from", "2", "--to", "1"], ["--from", "1", "--to", "1"]])
def test_empty_window_is_a_usage_error(run_cli, argv):
    result = run_cli("report", str(DATA / "core" / "two_vms.csv"), *argv)
    assert result.code == 2
    assert "--to must be after --from" in result.err


def test_absurd_interval_counts_are_refused(run_cli):
    # the sample spans 7.5 s: 1 ns intervals would be 7.5 billion rows
    result = run_cli("report", "--sample", "--interval", "1ns", "--format", "csv")
    assert result.code == 2
    assert "7,500,472,968 intervals, more than 10,000,000" in result.err
    assert "larger --interval" in result.err


def test_a_table_longer_than_a_screen_is_refused_with_a_hint(run_cli):
    result = run_cli("report", "--sample", "--interval", "1ms")
    assert result.code == 2
    assert "7,501 intervals" in result.err
    assert "--format csv" in result.err
    assert run_cli("report", "--sample", "--interval", "10ms").code == 0
