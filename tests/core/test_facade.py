"""The library facade (``runstate.analyze`` / ``open_source`` / ``render``) against the CLI.

Every registered reader is walked (a new reader without a sample here fails the
first test), and for each, the facade's report in every output format must be
byte for byte what ``runstate report --format FMT`` prints for the same file.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import runstate
from runstate.model.states import DomainState
from runstate.sources.registry import READERS
from tests.conftest import DATA, XEN_DATA

PACKAGE_DATA = Path(runstate.__file__).parent / "data"
LINUX = DATA / "linux"

#: a small input of each format; jsonl is derived from the CSV fixture in the test
SAMPLES = {
    "xentrace": XEN_DATA / "c01_basic.trace",
    "tracefs-recording": PACKAGE_DATA / "qemu-demo.rec",
    "perf-data": LINUX / "pinned2.perf.data",
    "perf-script": LINUX / "pinned2.perf-script-pid.txt",
    "ftrace-text": LINUX / "sleepy2.ftrace.txt",
    "csv": DATA / "core" / "two_vms.csv",
    "jsonl": None,
}
#: options that make the figures depend on what the facade passes through
OPTIONS = {
    "xentrace": {"cpu_hz": "2.4G"},
    "perf-data": {"group": "process"},
    "perf-script": {"group": "process"},
    "ftrace-text": {"group": "process"},
}
CLI_FLAGS = {"cpu_hz": "--cpu-hz", "group": "--group"}


def _sample(name: str, tmp_path: Path) -> Path:
    given = SAMPLES[name]
    if given is not None:
        return given
    path = tmp_path / "two_vms.jsonl"
    with open(DATA / "core" / "two_vms.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    path.write_text("".join(json.dumps({**r, "time_ns": int(r["time_ns"])}) + "\n"
                            for r in rows))
    return path


def test_every_reader_has_a_sample():
    assert sorted(r.FORMAT.name for r in READERS) == sorted(SAMPLES)


@pytest.mark.parametrize("reader", [r.FORMAT.name for r in READERS])
@pytest.mark.parametrize("fmt", runstate.RENDER_FORMATS)
def test_facade_equals_cli(run_cli, tmp_path, reader, fmt):
    path = _sample(reader, tmp_path)
    options = OPTIONS.get(reader, {})
    report = runstate.analyze(str(path), interval="100ms", **options)
    assert report.format == reader  # detected from the content, as the CLI does
    flags = [a for k, v in options.items() for a in (CLI_FLAGS[k], v)]
    cli = run_cli("report", str(path), "--interval", "100ms", "--format", fmt, *flags)
    assert cli.code == 0, cli.err
    assert runstate.render(report, fmt) == cli.out
    if fmt == "json":
        doc = json.loads(cli.out)
        facade = {d.domain: {s.label: row.ns for s, row in d.states.items()}
                  for d in report.domains}
        assert facade == {d["domain"]: {s: v["ns"] for s, v in d["states"].items()}
                          for d in doc["domains"]}
        assert report.anomalies == doc["anomalies"]


@pytest.mark.parametrize(("reader", "start", "end"), [
    ("xentrace", 0.002, 0.015), ("perf-data", None, None), ("csv", 0.000002, 0.000012)])
def test_window_equals_cli_from_to(run_cli, tmp_path, reader, start, end):
    path = _sample(reader, tmp_path)
    options = OPTIONS.get(reader, {})
    if start is None:  # a window inside the trace's own clock, from the trace itself
        first = runstate.analyze(str(path), **options)
        start, end = first.start_ns / 1e9 + 0.1, first.start_ns / 1e9 + 0.3
    report = runstate.analyze(str(path), start=start, end=end, **options)
    flags = [a for k, v in options.items() for a in (CLI_FLAGS[k], v)]
    cli = run_cli("report", str(path), "--from", repr(start), "--to", repr(end),
                  "--format", "json", *flags)
    assert cli.code == 0, cli.err
    assert runstate.render(report, "json") == cli.out
    assert report.end_ns - report.start_ns == round((end - start) * 1e9)


def test_csv_figures_worked_out_by_hand():
    """two_vms.csv, read off its rows (window 1000..20000 ns, data lost 13000..15000).

    web (members 0, 1): 0 runnable / 1 running until 5000 (hazard), both running
    until 9000 (full run), 1 blocked until the loss (partial run); member 1 never
    shows up after the loss, so web stays lost to the end.  db (member 0): blocked
    from the window start (the old state of its first row) until 9500, running
    until 12000, blocked; after the loss blocked (old state of its next row) until
    16000, then runnable.
    """
    report = runstate.analyze(str(DATA / "core" / "two_vms.csv"))
    got = {d.name: {s: row.ns for s, row in d.states.items() if row.ns}
           for d in report.domains}
    S = DomainState
    assert got == {
        "web": {S.CONCURRENCY_HAZARD: 4000, S.FULL_RUN: 4000, S.PARTIAL_RUN: 4000,
                S.LOST: 2000 + 5000},
        "db": {S.BLOCKED: 8500 + 1000 + 1000, S.FULL_RUN: 2500, S.LOST: 2000,
               S.FULL_CONTENTION: 4000},
    }
    assert (report.start_ns, report.end_ns) == (1000, 20000)


def test_window_and_interval_options():
    path = str(DATA / "core" / "two_vms.csv")
    report = runstate.analyze(path, start=5e-6, end=15e-6, interval=2500)
    assert (report.start_ns, report.end_ns) == (5000, 15000)
    assert [(i.start_ns, i.end_ns) for i in report.intervals] == [
        (5000, 7500), (7500, 10000), (10000, 12500), (12500, 15000)]
    for interval in report.intervals:
        for states in interval.domains.values():
            assert sum(states.values()) == interval.end_ns - interval.start_ns


def test_open_source_gives_batches_of_the_file():
    source = runstate.open_source(str(DATA / "core" / "two_vms.csv"))
    rows = sum(len(b) for b in source.batches())
    with open(DATA / "core" / "two_vms.csv") as f:
        assert rows == sum(1 for _ in f) - 1


def test_errors_are_runstate_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time_ns,domain,member,old_state,new_state\n1,a,0,running,flying\n")
    with pytest.raises(runstate.InputError, match=r"bad\.csv:2"):
        runstate.analyze(str(bad))
    with pytest.raises(runstate.UsageError):
        runstate.analyze(str(bad), interval="1m")
    with pytest.raises(runstate.UsageError):
        runstate.render(runstate.analyze(str(DATA / "core" / "two_vms.csv")), "xml")


def test_import_is_light():
    code = "import sys, runstate; print(sorted(m for m in ('numpy', 'runstate.engine.core', " \
           "'runstate.sources.registry') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    assert runstate.DomainState.FULL_RUN in DomainState
