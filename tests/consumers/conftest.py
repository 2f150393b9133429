"""Workloads for the consumer tests: the C load generator of the Linux fixtures, built once."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DATA

LOAD_SOURCE = DATA / "linux" / "load.c"


@dataclass
class Load:
    """A running load process: N threads that spin (or spin 1 ms and sleep)."""

    proc: subprocess.Popen[str]
    threads: list[int]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def group_file(self, path: Path, name: str = "load") -> Path:
        """A --group file making the worker threads (not the main thread) one domain."""
        path.write_text(json.dumps({name: self.threads}))
        return path


@pytest.fixture(scope="session")
def load_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler for the load generator")
    out = tmp_path_factory.mktemp("load") / "load"
    subprocess.run([compiler, "-O2", "-pthread", "-o", str(out), str(LOAD_SOURCE)], check=True)
    return out


@pytest.fixture
def start_load(load_binary: Path) -> Iterator[object]:
    started: list[subprocess.Popen[str]] = []

    def start(threads: int, seconds: float, sleep_us: int = 0, favoured: bool = False) -> Load:
        """``favoured``: the cores are the threads' nearly as if the host were idle,
        whatever else runs (see :func:`favour`)."""
        proc = subprocess.Popen([str(load_binary), str(threads), str(seconds), str(sleep_us)],
                                stdout=subprocess.DEVNULL, text=True,
                                start_new_session=favoured,
                                preexec_fn=(lambda: os.nice(-20)) if favoured else None)
        started.append(proc)
        if favoured:
            favour(proc.pid)
        deadline = time.monotonic() + 5
        tids: list[int] = []
        while len(tids) < threads and time.monotonic() < deadline:
            time.sleep(0.02)
            tids = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task")
                          if int(t) != proc.pid)
        assert len(tids) == threads, tids
        return Load(proc, tids)

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def favour(pid: int) -> None:
    """Nice -20 for the session's scheduler autogroup too: with autogroups (the default),
    nice only ranks tasks within their session, and each session shares the CPUs equally
    with the others.  Call on a process started with ``start_new_session`` and nice -20."""
    with contextlib.suppress(OSError):  # kernels without autogroups
        Path(f"/proc/{pid}/autogroup").write_text("-20")


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (tracefs)")


def record(pid: int, seconds: float, out: Path) -> Path:
    """``runstate record --pid PID`` for ``seconds`` into ``out``.

    The recorder is favoured: it mostly sleeps, and on a busy machine (or next to a
    favoured load) it must not be starved before it starts tracing.
    """
    proc = subprocess.Popen([sys.executable, "-m", "runstate", "record", "--pid", str(pid),
                             "-d", str(seconds), "-o", str(out)], stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=lambda: os.nice(-20))
    favour(proc.pid)
    _, err = proc.communicate(timeout=seconds + 60)
    assert proc.returncode == 0, err
    return out
