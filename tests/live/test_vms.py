"""``runstate vms`` against real QEMU processes: names, pids and vCPU threads.

The expected thread ids come from /proc (thread names) and, for a guest
started without thread names, from the QMP monitor the test asks itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live.live_workloads import raised_priority

GUEST_DIR = Path(os.environ.get("RUNSTATE_GUEST_DIR",
                                Path.home() / ".cache" / "runstate-guest"))


def _qemu(name_option: str, qmp: Path, debug_threads: bool) -> subprocess.Popen[bytes]:
    name = f"{name_option},debug-threads={'on' if debug_threads else 'off'}"
    return subprocess.Popen(
        ["qemu-system-x86_64", "-name", name, "-machine", "q35", "-accel", "tcg,thread=multi",
         "-smp", "3", "-m", "128", "-kernel", str(GUEST_DIR / "vmlinuz"),
         "-initrd", str(GUEST_DIR / "initramfs.cpio.gz"),
         "-append", "console=ttyS0 quiet p1=30 p2=1 p3=1", "-display", "none",
         "-serial", "null", "-monitor", "none", "-no-reboot", "-nic", "none",
         "-qmp", f"unix:{qmp},server=on,wait=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def guests(tmp_path: Path) -> Iterator[dict[str, tuple[int, Path]]]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    if not (GUEST_DIR / "vmlinuz").exists():
        pytest.skip(f"no test guest in {GUEST_DIR} (scripts/guest/build.sh)")
    specs = {"rsvms-a": ("guest=rsvms-a", True), "rsvms-b": ("rsvms-b", False)}
    procs = {}
    with raised_priority(), contextlib.ExitStack() as cleanup:
        cleanup.callback(_kill_all, procs)
        for name, (option, threads) in specs.items():
            qmp = tmp_path / f"{name}.qmp"
            procs[name] = (_qemu(option, qmp, threads), qmp)
        deadline = time.monotonic() + 20
        while not all(q.exists() and _threads(p.pid) >= 6 for p, q in procs.values()):
            assert time.monotonic() < deadline, "QEMU did not start"
            time.sleep(0.1)
        yield {name: (p.pid, q) for name, (p, q) in procs.items()}


def _kill_all(procs: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    for p, _ in procs.values():
        p.kill()
        p.wait()


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _vcpu_tids_by_name(pid: int) -> list[int]:
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        if comm.startswith("CPU ") and comm.endswith("/TCG"):
            found[int(comm.split()[1].split("/")[0])] = int(tid)
    return [found[i] for i in sorted(found)]


def _qmp_vcpu_tids(path: Path) -> list[int]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        f = s.makefile("rw")
        f.readline()
        for command in ("qmp_capabilities", "query-cpus-fast"):
            f.write(json.dumps({"execute": command}) + "\n")
            f.flush()
            while "return" not in (answer := json.loads(f.readline())):
                pass
    return [c["thread-id"] for c in sorted(answer["return"], key=lambda c: c["cpu-index"])]


def _vms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runstate", "vms", *args],
                          capture_output=True, text=True, timeout=30)


def test_lists_guests_with_their_vcpu_threads(guests: dict[str, tuple[int, Path]]) -> None:
    done = _vms("--format", "json")
    assert done.returncode == 0, done.stderr
    listed = {vm["name"]: vm for vm in json.loads(done.stdout)["vms"]}
    a_pid, _ = guests["rsvms-a"]
    assert listed["rsvms-a"]["pid"] == a_pid
    assert listed["rsvms-a"]["vcpus"] == 3
    tids = [t["tid"] for t in listed["rsvms-a"]["vcpu_threads"]]
    assert tids == _vcpu_tids_by_name(a_pid) and len(set(tids)) == 3
    # -name NAME without guest=, and no thread names: listed, vCPUs unknown by name
    b_pid, _ = guests["rsvms-b"]
    assert listed["rsvms-b"]["pid"] == b_pid
    assert listed["rsvms-b"]["vcpus"] == 0
    table = _vms().stdout.splitlines()
    row = next(line.split() for line in table if line.startswith("rsvms-a "))
    assert row[1:3] == [str(a_pid), "3"] and [int(t) for t in row[3:]] == tids


def test_qmp_gives_the_vcpu_threads(guests: dict[str, tuple[int, Path]]) -> None:
    b_pid, qmp = guests["rsvms-b"]
    expected = _qmp_vcpu_tids(qmp)
    done = _vms("--qmp", str(qmp), "--format", "json")
    assert done.returncode == 0, done.stderr
    (vm,) = json.loads(done.stdout)["vms"]
    assert vm["name"] == "rsvms-b" and vm["pid"] == b_pid
    assert [t["tid"] for t in vm["vcpu_threads"]] == expected
    assert all(os.path.isdir(f"/proc/{b_pid}/task/{t}") for t in expected)


def test_bad_qmp_socket_is_one_line(tmp_path: Path) -> None:
    done = _vms("--qmp", str(tmp_path / "nothing.sock"))
    assert done.returncode == 1
    assert done.stderr.startswith("runstate: error: --qmp ") and done.stderr.count("\n") == 1
