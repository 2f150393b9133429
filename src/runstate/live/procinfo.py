"""What /proc says about threads: names, thread groups, cgroups, states, QEMU VMs.

A recording stores this beside the events, because a thread that never
switches during the recording leaves no event, and only its /proc state at
the start tells whether it was blocked or running all along.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: vCPU thread names QEMU gives with ``debug-threads=on``
VCPU_COMM = re.compile(r"^CPU \d+/(KVM|TCG)$")


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    tid: int
    tgid: int
    comm: str
    #: one-letter state from /proc/PID/task/TID/stat (R, S, D, T, t, Z, X, I, ...)
    state: str
    cgroup: str | None

    def as_json(self) -> dict[str, object]:
        return {"comm": self.comm, "tgid": self.tgid, "state": self.state,
                "cgroup": self.cgroup}


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def all_pids() -> list[int]:
    return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


def thread_ids(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (empty if it is gone)."""
    try:
        return sorted(int(n) for n in os.listdir(f"/proc/{pid}/task") if n.isdigit())
    except OSError:
        return []


def thread_info(pid: int, tid: int) -> ThreadInfo | None:
    """One thread's name, state and cgroup; None if it exited meanwhile."""
    base = f"/proc/{pid}/task/{tid}"
    stat = _read(f"{base}/stat")
    if stat is None:
        return None
    close = stat.rfind(")")
    fields = stat[close + 2:].split()
    comm_text = _read(f"{base}/comm")
    comm = comm_text.rstrip("\n") if comm_text is not None else stat[stat.find("(") + 1:close]
    return ThreadInfo(tid=tid, tgid=pid, comm=comm, state=fields[0] if fields else "?",
                      cgroup=_cgroup(_read(f"{base}/cgroup")))


def thread_state(tid: int) -> str | None:
    """Thread ``tid``'s one-letter state now; None if there is no such thread."""
    stat = _read(f"/proc/{tid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0] if fields else None


def _cgroup(text: str | None) -> str | None:
    """The unified (v2) path if present, else the cpu controller's v1 path."""
    if text is None:
        return None
    v1 = None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            return path
        if "cpu" in controllers.split(",") and v1 is None:
            v1 = path
    return v1


def snapshot(pids: Iterable[int] | None) -> dict[int, ThreadInfo]:
    """Every thread of ``pids`` (None: of every process), by tid."""
    result: dict[int, ThreadInfo] = {}
    for pid in all_pids() if pids is None else sorted(set(pids)):
        for tid in thread_ids(pid):
            info = thread_info(pid, tid)
            if info is not None:
                result[tid] = info
    return result


def qemu_guest_name(pid: int) -> str | None:
    """The VM name from a QEMU command line (``-name guest=NAME,...`` or ``-name NAME``)."""
    raw = _read(f"/proc/{pid}/cmdline")
    if raw is None:
        return None
    args = raw.split("\0")
    if "qemu" not in os.path.basename(args[0]):
        return None
    for i, arg in enumerate(args[:-1]):
        if arg in ("-name", "--name"):
            return parse_name_option(args[i + 1])
    return None


def parse_name_option(value: str) -> str | None:
    """The guest name in a QEMU ``-name`` value (``,,`` escapes a comma)."""
    parts = [p.replace("\0", ",") for p in value.replace(",,", "\0").split(",")]
    if parts and "=" not in parts[0]:
        return parts[0] or None
    for part in parts:
        key, _, name = part.partition("=")
        if key == "guest":
            return name or None
    return None


def qemu_vms() -> dict[int, str]:
    """Every running QEMU process with a guest name: pid -> name."""
    found = {}
    for pid in all_pids():
        name = qemu_guest_name(pid)
        if name is not None:
            found[pid] = name
    return found


def thread_group(tid: int) -> int | None:
    """The process (thread group leader) of thread ``tid``; None if there is no such task.

    ``/proc/TID`` exists for every thread, not only for processes, so a thread id
    given as ``--pid`` is found, and its process is what gets recorded and named.
    """
    status = _read(f"/proc/{tid}/status")
    if status is None:
        return None
    for line in status.splitlines():
        if line.startswith("Tgid:"):
            value = line.split()[1:2]
            return int(value[0]) if value and value[0].isdigit() else None
    return None
