"""The full-screen ``runstate top`` in a real terminal (tmux): what it shows and its keys."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.live.live_workloads import SLEEP, SPIN, group_file, need_root, processes

pytestmark = pytest.mark.live


#: a private tmux server: started from this (raised) process, apart from other sessions
SERVER = f"rstop{os.getpid()}"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SERVER, *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    need_root()
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    with processes([SPIN] + [SLEEP] * 3) as pids:
        session = f"rstop{os.getpid()}"
        # a fixed COLUMNS (pytest sets one) would override the pane width
        command = " ".join(["env -u COLUMNS -u LINES", sys.executable, "-m", "runstate", "top",
                            "--interval", "500ms",
                            "--group", group_file(tmp_path, pids),
                            *(f"--pid {p}" for p in pids)])
        _tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "30",
              f"{command}; echo EXIT=$?; sleep 30")
        try:
            yield session, pids
        finally:
            subprocess.run(["tmux", "-L", SERVER, "kill-server"], capture_output=True)
            with contextlib.suppress(OSError):  # the server's socket stays behind otherwise
                os.unlink(Path(os.environ.get("TMUX_TMPDIR", "/tmp"),
                               f"tmux-{os.getuid()}", SERVER))


def _wait_screen(session: str, ready: Callable[[str], bool], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _tmux("capture-pane", "-p", "-t", session)
        if ready(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"screen never became ready:\n{text}")


def _load_row(text: str) -> list[str]:
    rows = [line.split() for line in text.splitlines() if line.startswith("load ")]
    assert rows, text
    return rows[0]


def test_screen_shows_domains_and_answers_keys(screen: tuple[str, list[int]]) -> None:
    session, pids = screen
    text = _wait_screen(session, lambda t: re.search(r"^load +4 ", t, re.M) is not None
                        and "FOR" in t and re.search(r"\d\.\ds", t) is not None)
    assert f"cpus {os.cpu_count()}" in text
    assert re.search(r"source (bpf|tracefs)", text)
    row = _load_row(text)
    # DOMAIN MEMB FRUN FCONT HAZ BLK PRUN PCONT LOST %RUN %RDY STATE FOR
    shares = [float(v) for v in row[2:9]]
    assert abs(sum(shares) - 100) < 0.5
    assert shares[4] + shares[5] > 99  # one of four busy, the others asleep: partial_*
    assert row[11] in ("partial_run", "partial_contention"), text

    _tmux("send-keys", "-t", session, "m")
    text = _wait_screen(session, lambda t: all(f"[{p}]" in t for p in pids))
    _tmux("send-keys", "-t", session, "s")
    text = _wait_screen(session, lambda t: "BLK%v" in t)
    assert "HAZ%v" not in text
    _tmux("send-keys", "-t", session, "p")
    _wait_screen(session, lambda t: "[paused]" in t)
    _tmux("send-keys", "-t", session, "?")
    _wait_screen(session, lambda t: "m members" in t)
    _tmux("send-keys", "-t", session, "q")
    text = _wait_screen(session, lambda t: "EXIT=" in t)
    assert "EXIT=0" in text
    assert "Traceback" not in text
