"""Which threads of this host a live monitor follows, and the domain of each.

A :class:`TaskCatalog` turns a :class:`~runstate.live.snapshot.Selection` into
thread ids with their domain (through the same ``--group`` rules as the trace
readers) and keeps names for threads met later.  Rescanning is incremental:
only processes not seen before are read from /proc (and QEMU processes again,
whose vCPU threads appear and take their names while QEMU starts), so following
thousands of threads costs little per refresh.  A ``--vm NAME`` that is not
running yet is followed once it starts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from runstate.live import procinfo
from runstate.live.recorder import select_pids
from runstate.live.snapshot import Selection
from runstate.sources.linux.grouping import Assignment, Grouping, GroupMode, make_grouping
from runstate.sources.linux.schedevents import TaskNames

#: numeric group ids of modes whose domains are not a process or a thread start here,
#: above every possible pid (Linux's PID_MAX_LIMIT is 1 << 22)
FIRST_NAMED_GROUP = 1 << 24
#: a process met after the start has its command line read again for this long: it
#: may have been met between its fork and its exec (of QEMU)
RECHECK_NS = 5_000_000_000


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
        pids, vms = select_pids(select.pids, select.vms, select.all_tasks, wait_for_vms=True)
        self._roots = pids
        self.names = TaskNames()
        self.names.vm_name.update(vms)
        self._seen_pids: set[int] = set()
        #: processes whose command line was read (is it a VM?), and when those met
        #: after the start were first met
        self._checked: set[int] = set(vms) if pids is not None else set()
        self._young: dict[int, int] = {}
        self._started = False
        self._followed: dict[int, Followed] = {}
        self._named_groups: dict[str, int] = {}
        self.domains: dict[int, tuple[str, str]] = {}  # group id -> (key, name)
        initial = self._read_processes(pids if pids is not None else procinfo.all_pids())
        # --vm before any of them runs: VMs (else vm if vCPU threads run, else process)
        default = "vm" if select.vms and not select.pids and not vms else None
        self.grouping: Grouping = make_grouping(select.group or default, self.names)
        self.initial: list[Followed] = self._assign(initial)
        self._started = True

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

    @property
    def waiting_vms(self) -> list[str]:
        """``--vm`` names no QEMU process has had so far."""
        seen = set(self.names.vm_name.values())
        return [name for name in self.select.vms if name not in seen]

    def selects(self, tid: int) -> bool:
        """Whether thread ``tid``, not followed so far, belongs to the selection.

        True for any thread with ``--all``, and for a thread of a QEMU process a
        ``--vm`` names (a VM started after the monitor); forks of followed
        tasks are the sources' own business.
        """
        if self._roots is None:
            return True
        if not self.select.vms:
            return False
        tgid = procinfo.thread_group(tid)
        if tgid is None:
            return False
        self._check_process(tgid)
        return self.names.vm_name.get(tgid) in self.select.vms

    def _check_process(self, pid: int) -> None:
        """Learn whether process ``pid`` is a QEMU VM (its command line is read once,
        or for a while after it was first met, in case it was met before its exec)."""
        now = time.monotonic_ns()
        first_met = self._young.get(pid)
        if first_met is not None and now - first_met >= RECHECK_NS:
            del self._young[pid]
        elif pid in self._checked and first_met is None:
            return
        if pid not in self._checked:
            self._checked.add(pid)
            if self._started:
                self._young[pid] = now
        vm = procinfo.qemu_guest_name(pid)
        if vm is not None:
            self.names.vm_name[pid] = vm

    def _read_processes(self, pids: list[int]) -> list[int]:
        """Read the threads of processes not seen before into the names; their tids."""
        tids = []
        for pid in pids:
            if pid in self._seen_pids:
                continue
            self._seen_pids.add(pid)
            self._check_process(pid)
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
        and are named while QEMU starts).  Processes forked by followed tasks are
        followed by the sources themselves and only need names.
        """
        if self._roots is None:
            candidates = procinfo.all_pids()
            vms = {pid for pid in self.names.vm_name if pid in self._young}
        elif self.select.vms:
            pids = procinfo.all_pids()
            for pid in pids:
                self._check_process(pid)
            vms = {pid for pid in pids if self.names.vm_name.get(pid) in self.select.vms}
            candidates = sorted(vms)
        else:
            return []
        self._seen_pids -= vms  # reread: vCPU threads appear while QEMU starts
        return self._assign(self._read_processes(candidates))

    def describe(self, tid: int, comm_hint: str | None = None) -> Assignment | None:
        """Where thread ``tid`` belongs, reading /proc for a thread met only now.

        /proc is read at the moment of the decision, so a thread that renamed
        itself after it was created (QEMU names its vCPU threads so) is judged by
        its name now; ``comm_hint`` (from the events) names a thread already gone.
        """
        if tid not in self.names.tgid:
            tgid = procinfo.thread_group(tid)
            info = procinfo.thread_info(tgid, tid) if tgid is not None else None
            if info is not None:
                self._check_process(info.tgid)
                self._learn(info)
            elif comm_hint is not None:
                self.names.comm.setdefault(tid, comm_hint)
            elif tid not in self.names.comm:
                return None
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
            self.names.tgid.pop(tid, None)


def cpu_count() -> int:
    return os.cpu_count() or 1
