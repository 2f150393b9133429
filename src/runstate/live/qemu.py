"""The QEMU/KVM guests running on this host and their vCPU threads.

A guest's name comes from its command line (``-name guest=NAME,...`` as libvirt
starts it, or ``-name NAME``); its vCPUs are the threads QEMU names
``CPU n/KVM`` or ``CPU n/TCG`` (``debug-threads=on``, which libvirt always
sets).  Without thread names, QMP's ``query-cpus-fast`` on the guest's monitor
socket gives the vCPU thread ids exactly.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

from runstate.errors import EnvironmentProblem
from runstate.live import procinfo
from runstate.sources.linux.grouping import VCPU_COMM

QMP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Vcpu:
    index: int
    tid: int
    #: "KVM", "TCG", ... from the thread name; None when known from QMP only
    accel: str | None = None


@dataclass(frozen=True, slots=True)
class QemuVm:
    name: str
    pid: int
    vcpus: tuple[Vcpu, ...]

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "vcpus": len(self.vcpus),
                "vcpu_threads": [{"vcpu": v.index, "tid": v.tid, "accel": v.accel}
                                 for v in self.vcpus]}


def vcpu_threads(pid: int) -> tuple[Vcpu, ...]:
    """The vCPU threads of QEMU process ``pid``, by their thread names."""
    found = []
    for tid in procinfo.thread_ids(pid):
        info = procinfo.thread_info(pid, tid)
        if info is None:
            continue
        match = VCPU_COMM.fullmatch(info.comm)
        if match is not None:
            found.append(Vcpu(int(match.group(1)), tid, match.group(2)))
    return tuple(sorted(found, key=lambda v: v.index))


def running_vms() -> list[QemuVm]:
    """Every QEMU process with a guest name, with its vCPU threads."""
    return [QemuVm(name, pid, vcpu_threads(pid))
            for pid, name in sorted(procinfo.qemu_vms().items())]


class Qmp:
    """A minimal QMP client: greeting, capabilities negotiation, commands."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(QMP_TIMEOUT_S)
        try:
            self._sock.connect(path)
        except OSError as err:
            self._sock.close()
            raise EnvironmentProblem(f"--qmp {path}: cannot connect: {err.strerror or err}"
                                     ) from None
        self._buffer = b""
        self._message()  # the greeting
        self.execute("qmp_capabilities")

    def _message(self) -> dict[str, object]:
        while b"\n" not in self._buffer:
            try:
                chunk = self._sock.recv(65536)
            except OSError as err:
                raise EnvironmentProblem(f"--qmp {self.path}: {err}") from None
            if not chunk:
                raise EnvironmentProblem(f"--qmp {self.path}: the monitor closed the "
                                         "connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise EnvironmentProblem(f"--qmp {self.path}: not a QMP monitor") from None
        if not isinstance(message, dict):
            raise EnvironmentProblem(f"--qmp {self.path}: not a QMP monitor")
        return message

    def execute(self, command: str) -> object:
        self._sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        while True:
            message = self._message()
            if "return" in message:
                return message["return"]
            if "error" in message:
                raise EnvironmentProblem(f"--qmp {self.path}: {command}: {message['error']}")
            # an asynchronous event: keep reading

    def close(self) -> None:
        self._sock.close()


def vm_from_qmp(path: str) -> QemuVm:
    """The guest behind a QMP socket: name, process and vCPU threads from ``query-cpus-fast``."""
    qmp = Qmp(path)
    try:
        cpus = qmp.execute("query-cpus-fast")
        named = qmp.execute("query-name")
    finally:
        qmp.close()
    if not isinstance(cpus, list):
        raise EnvironmentProblem(f"--qmp {path}: unexpected query-cpus-fast answer")
    vcpus = tuple(sorted((Vcpu(int(c["cpu-index"]), int(c["thread-id"]))
                          for c in cpus if isinstance(c, dict)), key=lambda v: v.index))
    pid = (procinfo.thread_group(vcpus[0].tid) or 0) if vcpus else 0
    name = named.get("name") if isinstance(named, dict) else None
    if not isinstance(name, str) or not name:
        name = procinfo.qemu_guest_name(pid) or f"qemu:{pid}"
    accel = {v.tid: v.accel for v in vcpu_threads(pid)}
    return QemuVm(name, pid, tuple(Vcpu(v.index, v.tid, accel.get(v.tid)) for v in vcpus))
