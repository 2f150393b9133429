"""The installed ``runstate`` command: stdin, exit codes, data on stdout only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import DATA

TWO_VMS = DATA / "core" / "two_vms.csv"


def _runstate() -> list[str]:
    exe = shutil.which("runstate")
    return [exe] if exe else [sys.executable, "-m", "runstate"]


def test_stdin_gives_the_same_figures_as_the_file_when_read_once():
    from_file = subprocess.run([*_runstate(), "report", str(TWO_VMS), "--one-pass",
                                "--format", "json"], capture_output=True, text=True, check=True)
    from_stdin = subprocess.run([*_runstate(), "report", "-", "--format", "json"],
                                input=TWO_VMS.read_text(), capture_output=True, text=True,
                                check=True)
    a, b = json.loads(from_file.stdout), json.loads(from_stdin.stdout)
    assert a["domains"] == b["domains"]
    assert b["source"]["provisional"] is True
    assert from_stdin.stderr == ""


def test_stdin_stream_prints_intervals_as_they_complete():
    proc = subprocess.run([*_runstate(), "report", "-", "--interval", "5us", "--format", "csv"],
                          input=TWO_VMS.read_text(), capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("scope,start_ns")
    # 5 us intervals over the rows' span 1000..20000 ns; read once, db (first row at
    # 9500) only counts from the second interval on, web from the first
    rows = [line.split(",")[:5] for line in lines if line.startswith("interval,")]
    assert [(int(r[1]), int(r[2]), r[4]) for r in rows] == [
        (1000, 6000, "web"), (6000, 11000, "web"), (6000, 11000, "db"),
        (11000, 16000, "web"), (11000, 16000, "db"), (16000, 20000, "web"),
        (16000, 20000, "db")]


@pytest.mark.parametrize(("argv", "code"), [
    (["report", "/no/such/file"], 1),
    (["report", "--no-such-option"], 2),
    (["frobnicate"], 2),
])
def test_exit_codes_and_no_traceback(argv, code):
    proc = subprocess.run([*_runstate(), *argv], capture_output=True, text=True)
    assert proc.returncode == code
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_a_report_ends_without_teardown_and_its_output_is_whole(tmp_path):
    # an offline command ends the process as soon as its output is flushed: a large
    # document through a pipe and a file written with -o arrive whole, exit 0
    big = subprocess.run([*_runstate(), "report", str(TWO_VMS), "--interval", "50ns",
                          "--format", "json"], capture_output=True, text=True, check=True)
    doc = json.loads(big.stdout)
    assert len(big.stdout) > 100_000  # more than any pipe or stdio buffer holds
    # 50 ns intervals over the rows' span 1000..20000 ns: 380 of them, none dropped
    assert [row["start_ns"] for row in doc["intervals"]] == list(range(1000, 20000, 50))
    target = tmp_path / "out.json"
    subprocess.run([*_runstate(), "report", str(TWO_VMS), "--interval", "50ns",
                    "--format", "json", "-o", str(target)], check=True)
    assert json.loads(target.read_text()) == doc


def test_a_closed_pipe_still_ends_quietly():
    # `runstate report ... | head -1`: the reader goes away, the command ends with 0
    # and no traceback, as before the quick exit
    proc = subprocess.Popen([*_runstate(), "report", str(TWO_VMS), "--interval", "100ns",
                             "--format", "csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"scope,")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait() == 0
    assert "Traceback" not in err
