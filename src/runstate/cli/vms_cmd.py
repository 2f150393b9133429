"""``runstate vms``: the QEMU/KVM guests running on this host and their vCPU threads."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # /proc scanning loads only when the command runs
    from runstate.live.qemu import QemuVm

EPILOG = """\
examples:
  runstate vms                           name, pid, vCPU count and thread ids of each guest
  runstate vms --format json
  runstate vms --qmp /run/vm1.qmp        the guest behind a QMP socket (query-cpus-fast)

A guest's name is its -name (guest=NAME as libvirt starts it); its vCPUs are the
threads named 'CPU n/KVM' or 'CPU n/TCG' (QEMU's debug-threads=on)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("vms", help="list the QEMU/KVM guests running on this host",
                       description=__doc__, epilog=EPILOG)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--qmp", action="append", default=[], metavar="SOCKET",
                   help="ask the QMP monitor at SOCKET (query-cpus-fast) instead of "
                        "reading thread names; repeatable")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from runstate.live.qemu import running_vms, vm_from_qmp

    vms = [vm_from_qmp(path) for path in args.qmp] if args.qmp else running_vms()
    if args.format == "json":
        json.dump({"vms": [vm.as_json() for vm in vms]}, out, indent=2)
        out.write("\n")
    else:
        out.write(table(vms))
    return 0


def table(vms: list[QemuVm]) -> str:
    """Aligned columns: name, pid, vCPU count, vCPU thread ids (index order)."""
    rows = [("NAME", "PID", "VCPUS", "VCPU THREADS")]
    for vm in vms:
        threads = " ".join(str(v.tid) for v in vm.vcpus) or "-"
        rows.append((vm.name, str(vm.pid), str(len(vm.vcpus)), threads))
    if len(rows) == 1:
        return "no QEMU guests with a -name are running\n"
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}\n"
                   for r in rows)
