"""``runstate record -- CMD``, names across exec, thread ids, and killed recordings, on
this host (root and tracefs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runstate.errors import EnvironmentProblem
from runstate.live.tracefs import find_tracefs, list_instances
from runstate.sources.base import ReadOptions
from runstate.sources.linux.recording import RecordingSource

pytestmark = pytest.mark.live

#: four threads that spin for a while; prints its pid and its own start time
#: (CLOCK_MONOTONIC, the recording's clock), and exits with code 3
THREADS = """
import os, sys, threading, time
start = time.monotonic_ns()
def spin():
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        pass
ts = [threading.Thread(target=spin) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(os.getpid(), start, flush=True)
sys.exit(3)
"""


#: a process whose second thread lives long enough to be named by its tid
SLEEPERS = """
import threading, time
def nap():
    while True:
        time.sleep(0.01)
threading.Thread(target=nap, daemon=True).start()
time.sleep(60)
"""


@pytest.fixture(scope="module")
def tracefs():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        fs = find_tracefs()
    except EnvironmentProblem as err:
        pytest.skip(f"no tracefs: {err}")
    yield fs
    fs.release()


def runstate(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runstate", *argv], capture_output=True,
                          text=True, timeout=timeout)


def report_json(path: Path, *extra: str) -> dict:
    done = runstate("report", str(path), "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_command_is_recorded_from_its_start_to_its_exit(tracefs, tmp_path):
    out = tmp_path / "cmd.rec"
    done = runstate("record", "-o", str(out), "--", sys.executable, "-c", THREADS)
    assert done.returncode == 0, done.stderr
    pid, started = (int(x) for x in done.stdout.split())
    assert "exited with code 3" in done.stderr
    # the first event of the command's pid comes before its program even started
    events = list(RecordingSource(str(out), ReadOptions()).events())
    first = min(int(e.time[(e.pid == pid) | (e.other_pid == pid)].min())
                for e in events if ((e.pid == pid) | (e.other_pid == pid)).any())
    assert first < started
    doc = report_json(out, "--group", "process")
    ours = [d for d in doc["domains"] if d["domain"] == f"proc:{pid}"]
    assert len(ours) == 1
    # the main thread and the four it started
    assert ours[0]["members_seen"] == 5
    # its comm is the interpreter's after exec, not the recorder's before it
    assert ours[0]["name"] == f"{Path(sys.executable).name[:15]}[{pid}]"


def test_names_follow_exec_as_in_perf(tracefs, tmp_path):
    """``sh -c 'exec sleep'``: the process ends as sleep; perf names it so too."""
    out = tmp_path / "exec.rec"
    done = runstate("record", "-o", str(out), "--", "sh", "-c", "exec sleep 0.2")
    assert done.returncode == 0, done.stderr
    pid = int(re.search(r"\(pid (\d+)\)", done.stderr).group(1))
    names = {d["domain"]: d["name"] for d in report_json(out, "--group", "process")["domains"]}
    assert names[f"proc:{pid}"] == f"sleep[{pid}]"


def test_a_thread_id_records_and_names_its_process(tracefs, tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", SLEEPERS], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        tids: list[int] = []
        while len(tids) < 2 and time.monotonic() < deadline:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{worker.pid}/task"))
            time.sleep(0.02)
        thread = max(tids)
        assert thread != worker.pid
        out = tmp_path / "tid.rec"
        done = runstate("record", "--pid", str(thread), "-d", "300ms", "-o", str(out))
        assert done.returncode == 0, done.stderr
        assert f"--pid {thread} is a thread" in done.stderr
    finally:
        worker.kill()
        worker.wait()
    names = [d["name"] for d in report_json(out, "--group", "process")["domains"]]
    assert any(n.endswith(f"[{worker.pid}]") for n in names), names
    assert not any(n.endswith(f"[{thread}]") for n in names), names


def test_a_killed_recording_is_read_up_to_its_last_event(tracefs, tmp_path):
    out = tmp_path / "killed.rec"
    proc = subprocess.Popen([sys.executable, "-m", "runstate", "record", "--all", "-o",
                             str(out)], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert "Recording" in proc.stderr.readline()
    time.sleep(1.5)  # a few polls, even on a loaded host
    killed_at = time.monotonic_ns()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    doc = report_json(out)
    notes = " ".join(doc["source"]["notes"])
    assert "recording not finished" in notes
    meta = json.loads((out / "meta.json").read_text())
    assert meta["finished"] is False
    end = doc["window"]["end_ns"]
    assert meta["start_ns"] < end <= killed_at
    for d in doc["domains"]:
        assert sum(s["ns"] for s in d["states"].values()) == d["lifetime_ns"]
    # the next start removes what the killed run left in tracefs (if another run on
    # the host has not already done so)
    done = runstate("record", "--all", "-d", "100ms", "-o", str(tmp_path / "next.rec"))
    assert done.returncode == 0, done.stderr
    assert not [n for n in list_instances(tracefs) if n.startswith(f"runstate_{proc.pid}_")]


def test_a_command_that_cannot_run_leaves_nothing(tracefs, tmp_path):
    out = tmp_path / "none.rec"
    done = runstate("record", "-o", str(out), "--", str(tmp_path / "no-such-program"))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot run" in done.stderr
    assert not out.exists()
