"""``runstate top --batch``: one record per interval, checked against the clock and the workload."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runstate.cli import main as cli_main
from runstate.live.bpf.loader import missing_requirement
from tests.live.live_workloads import SLEEP, SPIN, group_file, need_root, processes

pytestmark = pytest.mark.live
STATES = ("full_run", "full_contention", "concurrency_hazard", "blocked", "partial_run",
          "partial_contention", "lost")


def _top(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runstate", "top", *args], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


INTERVAL_NS = 500_000_000


@pytest.mark.parametrize("source", ["bpf", "tracefs"])
def test_json_records_cover_each_interval(tmp_path: Path, source: str) -> None:
    need_root()
    if source == "bpf" and missing_requirement():
        pytest.skip(str(missing_requirement()))
    with processes([SPIN] + [SLEEP] * 2) as pids:
        done = _top("--batch", "--source", source, "--interval", "500ms", "--count", "4",
                    "--group", group_file(tmp_path, pids),
                    *(a for p in pids for a in ("--pid", str(p))))
    assert done.returncode == 0, done.stderr
    assert f"source {source}" in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 4
    _check_windows([r["window"] for r in records], exact=source == "tracefs")
    previous_totals = None
    seen = watched = 0
    for record in records:
        assert record["schema"] == "runstate.report/1"
        window = record["window"]
        (load,) = [d for d in record["domains"] if d["name"] == "load"]
        assert load["members_seen"] == 3
        ns = {s: load["states"][s]["ns"] for s in STATES}
        # the domain lived through the whole interval: its states add up to the window
        # (exactly for tracefs; bpf: see SLACK in test_top_follow.py)
        slack = 0 if source == "tracefs" else 0.01 * window["duration_ns"]
        assert abs(sum(ns.values()) - window["duration_ns"]) <= slack
        # one spinner, two sleepers: some members always blocked, never all running, and
        # the spinner never blocked, not even before its first event (it is unknown then)
        for state in ("full_run", "full_contention", "concurrency_hazard", "blocked"):
            assert ns[state] == 0, ns
        _check_lost(record, ns, first=previous_totals is None)
        seen += ns["partial_run"] + ns["partial_contention"]
        watched += window["duration_ns"]
        totals = load["totals"]
        if previous_totals is not None:
            grown = {s: totals[s] - previous_totals[s] for s in STATES}
            assert all(abs(grown[s] - ns[s]) <= 1 for s in STATES), (grown, ns)
        previous_totals = totals
        assert load["since_ns"] <= window["end_ns"]
    # what the tracer dropped is a part of the time: the spinner's running or waiting
    # shows for most of it
    assert seen > 0.5 * watched, (seen, watched)
    assert records[-1]["domains"][0]["current_state"] in (
        "partial_run", "partial_contention", "lost")


def _check_windows(windows: list[dict[str, int]], exact: bool) -> None:
    """Back to back, each one interval long after the first (which starts when counting
    started): exactly for tracefs (its records are placed at the interval ends), within
    the scheduling delay of the read for bpf (it reads the kernel's counters then)."""
    for before, after in zip(windows, windows[1:], strict=False):
        assert after["start_ns"] == before["end_ns"]
    assert 0 < windows[0]["duration_ns"] <= INTERVAL_NS + 0.1e9
    for window in windows[1:]:
        assert window["end_ns"] - window["start_ns"] == window["duration_ns"]
        if exact:
            assert window["duration_ns"] == INTERVAL_NS
            assert (window["end_ns"] - windows[0]["end_ns"]) % INTERVAL_NS == 0
        else:
            assert abs(window["duration_ns"] - INTERVAL_NS) < 0.1e9


def _check_lost(record: dict[str, object], ns: dict[str, int], first: bool) -> None:
    """What the tracer dropped is lost, never a state, and it is said why.  In the first
    record the spinner is also lost until its first event (running or runnable at the
    start, which /proc cannot tell apart)."""
    assert ns["partial_run"] + ns["partial_contention"] + ns["lost"] >= 0.999 * sum(ns.values())
    if ns["lost"] and not first:
        source = record["source"]
        host = record["host"]
        assert isinstance(source, dict) and isinstance(host, dict)
        assert source["notes"] or host["lost_events"], record


def test_csv_rows_under_one_header(tmp_path: Path) -> None:
    need_root()
    with processes([SLEEP] * 2) as pids:
        done = _top("--batch", "--format", "csv", "--interval", "300ms", "--count", "2",
                    "--group", group_file(tmp_path, pids),
                    *(a for p in pids for a in ("--pid", str(p))))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["name"] for r in rows] == ["load", "load"]
    for row in rows:
        length = int(row["end_ns"]) - int(row["start_ns"])
        assert int(row["blocked_ns"]) == sum(int(row[f"{s}_ns"]) for s in STATES)
        assert abs(int(row["blocked_ns"]) - length) < 0.01 * length
        assert float(row["blocked_pct"]) == 100.0


def test_auto_falls_back_and_says_why(tmp_path: Path) -> None:
    need_root()
    with processes([SLEEP]) as pids:
        done = _top("--batch", "--interval", "200ms", "--count", "1", "--pid", str(pids[0]),
                    env={"RUNSTATE_BPF_OBJECT": str(tmp_path / "missing.bpf.o")})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any("missing.bpf.o" in line and "using tracefs" in line for line in lines), lines
    assert "source tracefs" in done.stderr


def test_stream_on_stdin_matches_the_report(tmp_path: Path) -> None:
    sample = Path(__file__).parents[2] / "src" / "runstate" / "data" / "sample.csv"
    text = sample.read_text()
    done = _top("-", "--batch", "--interval", "200ms", stdin=text)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records
    report = subprocess.run([sys.executable, "-m", "runstate", "report", "-", "--format",
                             "json"], input=text, capture_output=True, text=True, check=True)
    expected = {d["domain"]: {s: d["states"][s]["ns"] for s in STATES}
                for d in json.loads(report.stdout)["domains"]}
    final = {d["domain"]: d["totals"] for d in records[-1]["domains"]}
    assert final.keys() == expected.keys()
    for key, states in expected.items():
        assert final[key] == states, key


@pytest.mark.parametrize("args", [["file.csv"], ["--count", "0"], ["--interval", "x"],
                                  ["-", "--all"]])
def test_usage_errors(args: list[str]) -> None:
    done = _top("--batch", *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") <= 3 and "Traceback" not in done.stderr


def test_without_root_one_line_names_what_is_missing(tmp_path: Path) -> None:
    need_root()  # to become an unprivileged user
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "runstate", "top", "--batch", "--count", "1"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if "No module named" in done.stderr:
        pytest.skip("the package is not readable by an unprivileged user here")
    assert done.returncode == 1
    assert done.stderr == "runstate: error: bpf needs root; tracefs needs root\n"


def _running_top(env: dict[str, str]) -> tuple[dict[str, str], int]:
    """A ``top --batch`` following a sleeping process, once it wrote its first record:
    the environment it runs with and its heap's kB in transparent huge pages."""
    need_root()
    with processes([SLEEP]) as pids:
        top = subprocess.Popen([sys.executable, "-m", "runstate", "top", "--batch",
                                "--interval", "200ms", "--pid", str(pids[0])],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
        assert top.stdout is not None
        try:
            assert json.loads(top.stdout.readline())["schema"] == "runstate.report/1"
            environ = dict(item.split("=", 1) for item in
                           Path(f"/proc/{top.pid}/environ").read_text().split("\0")
                           if "=" in item)
            rollup = Path(f"/proc/{top.pid}/smaps_rollup").read_text()
            huge_kb = int(rollup.split("AnonHugePages:")[1].split()[0])
        finally:
            top.terminate()
            top.stdout.read()
            top.stdout.close()
            top.wait(timeout=30)
    return environ, huge_kb


def test_top_runs_with_its_heap_in_huge_pages() -> None:
    # a periodic command restarts itself (exec, the same process) with Python's objects in
    # glibc's heap and that heap in transparent huge pages, where the system has them
    setting = Path(cli_main.THP_SETTING)
    if not setting.exists() or "[never]" in setting.read_text():
        pytest.skip("no transparent huge pages here")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "GLIBC_TUNABLES")}
    environ, huge_kb = _running_top(env)
    assert environ.get("PYTHONMALLOC") == "malloc"
    assert cli_main.HUGE_HEAP_TUNABLE in environ.get("GLIBC_TUNABLES", "").split(":")
    assert huge_kb >= 2048  # at least one huge page in use


def test_a_user_allocator_choice_is_kept() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    environ, _ = _running_top({**env, "PYTHONMALLOC": "pymalloc"})
    assert environ.get("PYTHONMALLOC") == "pymalloc"
    assert "GLIBC_TUNABLES" not in environ
