"""Real workloads with a known dominant domain state, and what the live tests share.

Each workload is a few Python processes (one thread each, so the GIL does not
serialise them) put into one domain by a group file; the tests read that
domain live and compare it with an independent figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runstate.live.snapshot import LiveDomain, LiveSnapshot
from runstate.model.states import DomainState

SPIN = "while True:\n    pass\n"
SLEEP = "import time\ntime.sleep(600)\n"
#: busy about 2/3 of the time in short bursts: every state occurs
BURSTY = """
import time
while True:
    end = time.perf_counter() + 0.080
    while time.perf_counter() < end:
        pass
    time.sleep(0.040)
"""
DOMAIN = "load"
NICE = -15


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@contextmanager
def raised_priority() -> Iterator[None]:
    """This test process and what it starts run at nice -15 in a raised autogroup.

    The host may be busy with other work; the workloads, the monitors and the
    tools under test then share one scheduler group of weight 29154 against
    1024 for each other group, so other load barely changes what they do, and
    none of them starves the others.  The previous values come back on exit.
    """
    if os.geteuid() != 0:  # only root may raise priorities
        yield
        return
    old_nice = os.getpriority(os.PRIO_PROCESS, 0)
    old_group = _autogroup_nice()
    os.setpriority(os.PRIO_PROCESS, 0, NICE)
    _set_autogroup_nice(NICE)
    try:
        yield
    finally:
        if old_group is not None:
            _set_autogroup_nice(old_group)
        os.setpriority(os.PRIO_PROCESS, 0, old_nice)


def _autogroup_nice() -> int | None:
    try:
        with open("/proc/self/autogroup", encoding="ascii") as f:
            return int(f.read().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def _set_autogroup_nice(nice: int) -> None:
    try:
        with open("/proc/self/autogroup", "w", encoding="ascii") as f:
            f.write(str(nice))
    except OSError:
        pass  # no autogroups: the nice value inherited by the children is what counts


@contextmanager
def processes(programs: list[str], cpu: int | None = None) -> Iterator[list[int]]:
    """Start one Python process per program (pinned to ``cpu`` if given); kill them after.

    Everything in the block runs with :func:`raised_priority`.
    """
    with raised_priority():
        procs = [subprocess.Popen([sys.executable, "-c", code]) for code in programs]
        try:
            if cpu is not None:
                for p in procs:
                    os.sched_setaffinity(p.pid, {cpu})
            time.sleep(0.4)  # interpreters started, workloads running
            yield [p.pid for p in procs]
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()


@contextmanager
def cpus_kept_busy() -> Iterator[None]:
    """A SCHED_IDLE spinner per CPU, so no CPU goes idle while the block runs.

    Tracers lose some idle-to-task switches on this kind of kernel (the
    recording's chain repair then guesses); with no idle CPU there are none,
    and SCHED_IDLE tasks take a CPU only when nothing else wants it.
    """
    procs = []
    try:
        for cpu in sorted(os.sched_getaffinity(0)):
            p = subprocess.Popen([sys.executable, "-c", SPIN])
            procs.append(p)
            os.sched_setaffinity(p.pid, {cpu})
            os.sched_setscheduler(p.pid, os.SCHED_IDLE, os.sched_param(0))
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


#: a stand-in for a QEMU guest: its command line is QEMU's (``-name guest=NAME``) and its
#: threads name themselves as QEMU's vCPU threads do (``CPU n/KVM``, right after they
#: start); each vCPU wakes every 10 ms, as an idle guest's timer does
FAKE_VM = """
import ctypes, sys, threading, time
libc = ctypes.CDLL(None)
def vcpu(i):
    libc.prctl(15, ("CPU %d/KVM" % i).encode(), 0, 0, 0)
    while True:
        time.sleep(0.01)
for i in range(int(sys.argv[1])):
    threading.Thread(target=vcpu, args=(i,), daemon=True).start()
time.sleep(600)
"""


@contextmanager
def fake_vm(name: str, vcpus: int = 2) -> Iterator[int]:
    """A process that looks like QEMU running guest ``name``; its pid."""
    # argv[0] is QEMU's: Python is told where its own library is
    proc = subprocess.Popen(["qemu-system-x86_64", "-c", FAKE_VM, str(vcpus), "-name",
                             f"guest={name},debug-threads=on"], executable=sys.executable,
                            env={**os.environ, "PYTHONHOME": sys.base_prefix})
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def vcpu_threads(pid: int) -> dict[int, str]:
    """The threads of ``pid`` named as vCPUs, tid -> name, from /proc."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        if comm.startswith("CPU "):
            found[int(tid)] = comm
    return found


def group_file(tmp_path: Path, pids: list[int]) -> str:
    """A --group FILE putting the given processes in one domain named ``load``."""
    path = tmp_path / "group.json"
    path.write_text(json.dumps({DOMAIN: pids}))
    return str(path)


def domain(snap: LiveSnapshot, name: str = DOMAIN) -> LiveDomain:
    found = [d for d in snap.domains if d.name == name]
    assert found, f"no domain {name} in {[d.name for d in snap.domains]}"
    return found[0]


def shares(before: LiveSnapshot, after: LiveSnapshot, name: str = DOMAIN
           ) -> dict[DomainState, float]:
    """Percent of the time between two snapshots in each state."""
    a, b = domain(before, name), domain(after, name)
    delta = {s: b.totals_ns[s] - a.totals_ns[s] for s in DomainState}
    total = sum(delta.values())
    assert total > 0
    return {s: 100.0 * v / total for s, v in delta.items()}


def dominant(share: dict[DomainState, float]) -> DomainState:
    return max(share, key=lambda s: share[s])
