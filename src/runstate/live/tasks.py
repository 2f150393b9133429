"""Which threads of this host a live monitor follows, and the domain of each.

A :class:`TaskCatalog` turns a :class:`~runstate.live.snapshot.Selection` into
thread ids with their domain (through the same ``--group`` rules as the trace
readers) and keeps names for threads met later.  Rescanning is incremental:
only processes not seen before are read from /proc, so following thousands of
threads costs little per refresh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from runstate.live import procinfo
from runstate.live.recorder import select_pids
from runstate.live.snapshot import Selection
from runstate.sources.linux.grouping import Assignment, Grouping, GroupMode, make_grouping
from runstate.sources.linux.schedevents import TaskNames

#: numeric group ids of modes whose domains are not a process or a thread start here,
#: above every possible pid (Linux's PID_MAX_LIMIT is 1 << 22)
FIRST_NAMED_GROUP = 1 << 24


@dataclass(frozen=True, slots=True)
class Followed:
    """One thread to follow: its domain and its member names, and a numeric group id."""

    tid: int
    group_id: int
    assignment: Assignment


class TaskCatalog:
    """Threads chosen by a selection, grouped into domains with stable numeric ids."""

    def __init__(self, select: Selection) -> None:
        self.select = select
        pids, vms = select_pids(select.pids, select.vms, select.all_tasks)
        self._roots = pids
        self.names = TaskNames()
        self.names.vm_name.update(vms)
        self._seen_pids: set[int] = set()
        self._followed: dict[int, Followed] = {}
        self._named_groups: dict[str, int] = {}
        self.domains: dict[int, tuple[str, str]] = {}  # group id -> (key, name)
        initial = self._read_processes(pids if pids is not None else procinfo.all_pids())
        self.grouping: Grouping = make_grouping(select.group, self.names)
        self.initial: list[Followed] = self._assign(initial)

    @property
    def mode(self) -> GroupMode:
        return self.grouping.mode

    @property
    def filtered(self) -> bool:
        """True when only some processes are followed (not ``--all``)."""
        return self._roots is not None

    @property
    def followed(self) -> dict[int, Followed]:
        return self._followed

    def _read_processes(self, pids: list[int]) -> list[int]:
        """Read the threads of processes not seen before into the names; their tids."""
        tids = []
        for pid in pids:
            if pid in self._seen_pids:
                continue
            self._seen_pids.add(pid)
            vm = procinfo.qemu_guest_name(pid)
            if vm is not None:
                self.names.vm_name[pid] = vm
            for tid, info in procinfo.snapshot([pid]).items():
                self._learn(info)
                tids.append(tid)
        return tids

    def _learn(self, info: procinfo.ThreadInfo) -> None:
        self.names.comm[info.tid] = info.comm
        self.names.tgid[info.tid] = info.tgid
        if info.cgroup is not None:
            self.names.cgroup[info.tid] = info.cgroup
        if info.state:
            self.names.start_state.setdefault(info.tid, info.state)

    def _assign(self, tids: list[int]) -> list[Followed]:
        added = []
        for tid in tids:
            if tid in self._followed:
                continue
            assignment = self.grouping.assign(tid)
            if assignment is None:
                continue
            followed = Followed(tid, self._group_id(tid, assignment), assignment)
            self._followed[tid] = followed
            self.domains.setdefault(followed.group_id,
                                    (assignment.domain_key, assignment.domain_name))
            added.append(followed)
        return added

    def _group_id(self, tid: int, assignment: Assignment) -> int:
        """Process and thread groups are keyed by pid / tid, as the kernel keys new ones."""
        if self.mode is GroupMode.PROCESS:
            return self.names.tgid.get(tid, tid)
        if self.mode in (GroupMode.THREAD,):
            return tid
        if self.mode is GroupMode.VM:
            tgid = self.names.tgid.get(tid)
            if tgid is not None:
                return tgid
        key = assignment.domain_key
        if key not in self._named_groups:
            self._named_groups[key] = FIRST_NAMED_GROUP + len(self._named_groups)
        return self._named_groups[key]

    def rescan(self) -> list[Followed]:
        """Threads to follow that appeared since the last scan.

        New processes are read once; VM processes are reread (vCPU threads appear
        while QEMU starts).  Processes forked by followed tasks are followed by
        the sources themselves and only need names.
        """
        if self._roots is None:
            candidates = procinfo.all_pids()
        elif self.select.vms:
            vms = {pid: name for pid, name in procinfo.qemu_vms().items()
                   if name in self.select.vms}
            self.names.vm_name.update(vms)
            for pid in vms:  # reread: vCPU threads appear while QEMU starts
                self._seen_pids.discard(pid)
            candidates = sorted(vms)
        else:
            candidates = []
        return self._assign(self._read_processes(candidates))

    def describe(self, tid: int) -> Assignment | None:
        """Where thread ``tid`` belongs, reading /proc for a thread met only now."""
        if tid not in self.names.comm:
            info = procinfo.thread_info(procinfo.thread_group(tid) or tid, tid)
            if info is None:
                return None
            self._learn(info)
        return self.grouping.assign(tid)

    def domain_of(self, group_id: int) -> tuple[str, str]:
        """(key, name) of a group id, also for groups the kernel made for new processes."""
        known = self.domains.get(group_id)
        if known is not None:
            return known
        assignment = self.describe(group_id)
        if assignment is None:
            prefix = "thread" if self.mode is GroupMode.THREAD else "proc"
            return f"{prefix}:{group_id}", f"[{group_id}]"
        self.domains[group_id] = (assignment.domain_key, assignment.domain_name)
        return self.domains[group_id]

    def member_names(self, tid: int) -> tuple[str, str]:
        """(key, name) of member ``tid``."""
        followed = self._followed.get(tid)
        assignment = followed.assignment if followed is not None else self.describe(tid)
        if assignment is None:
            return str(tid), f"tid{tid}"
        return assignment.member_key, assignment.member_name

    def forget_exited(self, live_tids: set[int]) -> None:
        """Drop threads that are gone (their tids may be reused)."""
        for tid in [t for t in self._followed if t not in live_tids]:
            del self._followed[tid]
            self.names.comm.pop(tid, None)


def cpu_count() -> int:
    return os.cpu_count() or 1
