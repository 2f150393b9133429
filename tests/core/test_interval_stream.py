"""Intervals are written as they finish: memory does not grow with their number, and the
streamed JSON / CSV hold exactly what the report built in memory holds."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runstate.analysis.pipeline import TraceWindow, analyze
from runstate.report.csv_out import header, interval_rows
from runstate.report.json_out import report_to_dict
from runstate.report.model import Report, build_report
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source
from tests.conftest import DATA

TWO_VMS = DATA / "core" / "two_vms.csv"
SAMPLE = Path(__file__).parents[2] / "src" / "runstate" / "data" / "qemu-demo.rec"


def _collected(path: Path, interval_ns: int) -> Report:
    """The report with its intervals kept in memory (no streaming involved)."""
    source = open_source(str(path), ReadOptions(), None)
    result = analyze(source, TraceWindow(interval_ns=interval_ns))
    return build_report(result, source.info)


@pytest.mark.parametrize(("path", "interval", "ns"), [(TWO_VMS, "3us", 3000),
                                                      (SAMPLE, "250ms", 250_000_000)])
def test_streamed_json_is_the_report_document(run_cli, path, interval, ns):
    cli = run_cli("report", str(path), "--interval", interval, "--format", "json")
    assert cli.code == 0, cli.err
    want = report_to_dict(_collected(path, ns))
    assert len(want["intervals"]) > 3
    assert json.loads(cli.out) == want


def test_several_sources_stream_into_one_document(run_cli):
    cli = run_cli("report", str(TWO_VMS), str(TWO_VMS), "--interval", "3us", "--format",
                  "json")
    want = report_to_dict(_collected(TWO_VMS, 3000))
    assert json.loads(cli.out) == {"reports": [want, want]}


def test_streamed_csv_has_the_reports_rows(run_cli):
    cli = run_cli("report", str(SAMPLE), "--interval", "100ms", "--format", "csv")
    report = _collected(SAMPLE, 100_000_000)
    names = {d.domain: d.name for d in report.domains}
    rows = list(csv.reader(io.StringIO(cli.out)))
    assert rows[0] == header()
    streamed = [r for r in rows[1:] if r[0] == "interval"]
    assert streamed == interval_rows(report.intervals, names)
    assert len(streamed) > 60
    totals = [r for r in rows[1:] if r[0] == "total"]
    assert [(r[3], int(r[6])) for r in totals] == [(d.domain, d.lifetime_ns)
                                                   for d in report.domains]


def test_stdin_json_stream_is_one_valid_document():
    proc = subprocess.run([sys.executable, "-m", "runstate", "report", "-", "--interval",
                           "5us", "--format", "json"], input=TWO_VMS.read_text(),
                          capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    assert [(i["start_ns"], i["end_ns"]) for i in doc["intervals"]] == [
        (1000, 6000), (6000, 11000), (11000, 16000), (16000, 20000)]
    assert doc["source"]["provisional"] is True


def _long_quiet_trace(path: Path, seconds: int) -> None:
    """Two vCPUs that change state every 100 ms for ``seconds`` s."""
    lines = ["time_ns,domain,member,old_state,new_state"]
    states = ("running", "runnable", "blocked")
    for k in range(10 * seconds + 1):
        t = k * 100_000_000
        lines.append(f"{t},vm,0,{states[k % 3]},{states[(k + 1) % 3]}")
        lines.append(f"{t},vm,1,{states[(k + 1) % 3]},{states[(k + 2) % 3]}")
    path.write_text("\n".join(lines) + "\n")


def _peak_kib_and_lines(argv: list[str]) -> tuple[int, int]:
    """Peak RSS (KiB) of ``runstate argv`` and the number of lines it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "runstate", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines = 0
    with proc.stdout:
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss, lines


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_half_a_million_intervals_stream_in_flat_memory(tmp_path, fmt):
    trace = tmp_path / "quiet.csv"
    _long_quiet_trace(trace, 1)
    base, _ = _peak_kib_and_lines(["report", str(trace), "--format", fmt])
    peak, lines = _peak_kib_and_lines(["report", str(trace), "--interval", "2us",
                                       "--format", fmt])
    intervals = 500_000  # 1 s in 2 us intervals
    assert lines >= intervals
    # kept in memory, each interval's result object and figures dict alone would take
    # well over 100 bytes, 50+ MB in all; streamed, the run stays within 10 MiB of the
    # peak of the same report without intervals
    assert peak - base < 10 * 1024, (base, peak)
