"""``runstate top`` leaves the host as found: on a normal end, SIGINT and SIGTERM it
releases its BPF programs and links and removes its tracefs instance; after
SIGKILL the kernel drops the BPF objects with the process's descriptors and the
next start removes the stale tracefs instance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runstate.live.bpf.loader import PROGRAM_NAMES, TRACEPOINT_PROGRAMS, missing_requirement
from runstate.live.tracefs import find_tracefs
from tests.live.live_workloads import SLEEP, need_root, processes

pytestmark = pytest.mark.live


def _bpftool(kind: str) -> list[dict[str, object]]:
    try:
        out = subprocess.run(["bpftool", kind, "show", "-j"], capture_output=True, text=True,
                             check=True).stdout
    except FileNotFoundError:
        pytest.skip("bpftool is not installed")
    return json.loads(out or "[]")


def _held_by(pid: int) -> tuple[set[int], set[int]]:
    """Ids of the BPF programs and links whose descriptors process ``pid`` holds (fdinfo)."""
    programs: set[int] = set()
    links: set[int] = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if "link_id" in fields:
            links.add(int(fields["link_id"]))
        elif "prog_id" in fields:
            programs.add(int(fields["prog_id"]))
    return programs, links


def _existing(kind: str) -> set[int]:
    return {int(str(item["id"])) for item in _bpftool(kind)}


def _start_top(source: str, pid: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstate", "top", "--batch", "--source", source,
         "--interval", "200ms", "--pid", str(pid)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # one interval written: counting is under way
    assert first.startswith("{"), proc.stderr.read() if proc.stderr else ""
    return proc


def _instances() -> set[str]:
    root = find_tracefs().root / "instances"
    return {n for n in os.listdir(root) if n.startswith("runstate_")}


def _finish(proc: subprocess.Popen[str], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    try:
        proc.communicate(timeout=20)
    finally:
        proc.kill()
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_bpf_objects_released(sig: signal.Signals) -> None:
    need_root()
    if missing_requirement():
        pytest.skip(str(missing_requirement()))
    with processes([SLEEP]) as pids:
        top = _start_top("bpf", pids[0])
        programs, links = _held_by(top.pid)
        code = _finish(top, sig)
    assert len(programs) == len(PROGRAM_NAMES)
    assert len(links) == len(TRACEPOINT_PROGRAMS)  # the task iterator's link is gone after use
    assert code == (-signal.SIGKILL if sig is signal.SIGKILL else 0)
    deadline = time.monotonic() + 5  # the kernel frees them shortly after the last fd
    while time.monotonic() < deadline and (programs & _existing("prog")
                                           or links & _existing("link")):
        time.sleep(0.1)
    assert not programs & _existing("prog")
    assert not links & _existing("link")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_tracefs_instance_removed_on_signal(sig: signal.Signals) -> None:
    need_root()
    with processes([SLEEP]) as pids:
        top = _start_top("tracefs", pids[0])
        mine = {n for n in _instances() if n.startswith(f"runstate_{top.pid}_")}
        assert len(mine) == 1
        assert _finish(top, sig) == 0
    assert not mine & _instances()


def test_tracefs_leftover_of_a_killed_run_removed_at_next_start(tmp_path: Path) -> None:
    need_root()
    with processes([SLEEP]) as pids:
        killed = _start_top("tracefs", pids[0])
        left = {n for n in _instances() if n.startswith(f"runstate_{killed.pid}_")}
        _finish(killed, signal.SIGKILL)
        assert left and left <= _instances()  # SIGKILL leaves it behind
        again = _start_top("tracefs", pids[0])
        try:
            assert not left & _instances()
        finally:
            assert _finish(again, signal.SIGTERM) == 0
