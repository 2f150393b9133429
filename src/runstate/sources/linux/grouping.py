"""How Linux threads form domains: the ``--group`` modes (vm, process, cgroup, thread, FILE).

A grouping maps a thread id to the (domain, member) it belongs to, or to
nothing: threads outside every group are ignored.  The idle tasks (pid 0) are
never assigned here; ``sched`` turns each CPU's idle time into the host-idle
domain.  Every decision depends only on :class:`TaskNames`, which the readers
complete before conversion starts, so two passes over a file register the same
members in the same order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from runstate.errors import InputError, UsageError
from runstate.sources.linux.schedevents import TaskNames

#: QEMU's vCPU thread names (``debug-threads=on``): ``CPU 0/KVM``, ``CPU 3/TCG``, ...
VCPU_COMM = re.compile(r"CPU (\d+)/([A-Za-z][A-Za-z0-9_-]*)")


class GroupMode(Enum):
    VM = "vm"
    PROCESS = "process"
    CGROUP = "cgroup"
    THREAD = "thread"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one thread belongs."""

    domain_key: str
    domain_name: str
    member_key: str
    member_name: str


class Grouping:
    """Assigns threads to domains for one ``--group`` mode over known task names."""

    def __init__(self, mode: GroupMode, names: TaskNames,
                 mapping: list[tuple[str, set[int], list[re.Pattern[str]]]] | None = None
                 ) -> None:
        self.mode = mode
        self.names = names
        self._mapping = mapping or []
        self._vcpus_per_vm = _count_vcpus(names) if mode is GroupMode.VM else {}

    @property
    def expected_members(self) -> dict[str, int]:
        """Domain key -> number of members the names say exist (vm mode: vCPU threads)."""
        return {_vm_key(tgid): n for tgid, n in self._vcpus_per_vm.items()}

    def assign(self, tid: int) -> Assignment | None:
        """The domain and member of thread ``tid``, or None if it belongs to no group."""
        if tid <= 0:
            return None
        comm = self.names.comm.get(tid, f"tid{tid}")
        if self.mode is GroupMode.VM:
            return self._vm(tid, comm)
        if self.mode is GroupMode.PROCESS:
            tgid = self.names.tgid.get(tid, tid)
            leader = self.names.comm.get(tgid, comm)
            return Assignment(f"proc:{tgid}", f"{leader}[{tgid}]", str(tid), f"{comm}[{tid}]")
        if self.mode is GroupMode.THREAD:
            return Assignment(f"thread:{tid}", f"{comm}[{tid}]", str(tid), f"{comm}[{tid}]")
        if self.mode is GroupMode.CGROUP:
            cgroup = self.names.cgroup.get(tid)
            if cgroup is None:
                return None
            return Assignment(f"cgroup:{cgroup}", cgroup, str(tid), f"{comm}[{tid}]")
        return self._from_file(tid, comm)

    def _vm(self, tid: int, comm: str) -> Assignment | None:
        match = VCPU_COMM.fullmatch(comm)
        if match is None:
            return None
        tgid = self.names.tgid.get(tid)
        vcpu = f"vcpu{match.group(1)}"
        if tgid is None:
            # no thread-group information: one VM for all vCPU threads, keyed by thread
            return Assignment("vm:unknown", "qemu:unknown", str(tid), f"{vcpu}[{tid}]")
        name = self.names.vm_name.get(tgid, f"qemu:{tgid}")
        return Assignment(_vm_key(tgid), name, vcpu, vcpu)

    def _from_file(self, tid: int, comm: str) -> Assignment | None:
        for name, tids, patterns in self._mapping:
            if tid in tids or any(p.fullmatch(comm) for p in patterns):
                return Assignment(f"group:{name}", name, str(tid), f"{comm}[{tid}]")
        return None


def _vm_key(tgid: int) -> str:
    return f"vm:{tgid}"


def _count_vcpus(names: TaskNames) -> dict[int, int]:
    counts: dict[int, int] = {}
    for tid, comm in names.comm.items():
        tgid = names.tgid.get(tid)
        if tgid is not None and VCPU_COMM.fullmatch(comm) is not None:
            counts[tgid] = counts.get(tgid, 0) + 1
    return counts


def has_vcpu_threads(names: TaskNames, active: set[int] | None = None) -> bool:
    """True if a QEMU vCPU thread is known (and, given ``active``, has events)."""
    return any(VCPU_COMM.fullmatch(c) is not None for t, c in names.comm.items()
               if active is None or t in active)


def make_grouping(group: str | None, names: TaskNames,
                  active: set[int] | None = None) -> Grouping:
    """The grouping for ``--group``.

    None: ``vm`` if vCPU threads are present (among ``active``, the threads with
    events, when the reader knows them), else ``process``.
    """
    if group is None:
        mode = GroupMode.VM if has_vcpu_threads(names, active) else GroupMode.PROCESS
        return Grouping(mode, names)
    for mode in (GroupMode.VM, GroupMode.PROCESS, GroupMode.CGROUP, GroupMode.THREAD):
        if group == mode.value:
            if mode is GroupMode.CGROUP and not names.cgroup:
                raise UsageError("--group cgroup: this trace carries no cgroup information "
                                 "(use a recording made by 'runstate record')")
            return Grouping(mode, names)
    return Grouping(GroupMode.FILE, names, load_mapping(group))


def load_mapping(path: str) -> list[tuple[str, set[int], list[re.Pattern[str]]]]:
    """Read a ``--group FILE``: ``{"domain name": [tid, "comm regex", ...], ...}``."""
    import json  # only a group file needs it: not imported for every trace

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"--group {path!r}: not vm, process, cgroup, thread or an existing "
                         "JSON file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read group mapping: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"group mapping is not valid JSON: {err.msg}",
                         line=err.lineno) from None
    if not isinstance(data, dict):
        raise InputError(path, "group mapping must be a JSON object "
                         '{"domain name": [tid or comm regex, ...]}')
    mapping = []
    for name, entries in data.items():
        if not isinstance(entries, list):
            raise InputError(path, f"group {name!r}: expected a list of tids and comm regexes")
        mapping.append(_mapping_entry(path, str(name), entries))
    return mapping


def _mapping_entry(path: str, name: str, entries: list[object]
                   ) -> tuple[str, set[int], list[re.Pattern[str]]]:
    tids: set[int] = set()
    patterns: list[re.Pattern[str]] = []
    for entry in entries:
        if isinstance(entry, bool) or not isinstance(entry, int | str):
            raise InputError(path, f"group {name!r}: {entry!r} is neither a tid nor a regex")
        if isinstance(entry, int):
            tids.add(entry)
            continue
        try:
            patterns.append(re.compile(entry))
        except re.error as err:
            raise InputError(path, f"group {name!r}: bad regular expression {entry!r}: "
                             f"{err}") from None
    return name, tids, patterns
