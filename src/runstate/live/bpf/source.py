"""The ``bpf`` live source: the kernel counts, user space reads and names.

The program keeps every counter; this side only fills the member table from
the selection, adds processes that appear later (a VM started after the
monitor), and turns one read of the tables into a
:class:`~runstate.live.snapshot.LiveSnapshot`.  Counters are read at a moment,
so each domain's current stay is added up to that moment.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from runstate.live.bpf.loader import BpfAccounting, Counters, ForkGrouping, MemberCode
from runstate.live.bpf.reads import TableReads
from runstate.live.bpf.table import NeverLess, group_table, members_per_group
from runstate.live.snapshot import DomainTable, LiveMember, LiveSnapshot, TableDomains
from runstate.live.tasks import Followed, TaskCatalog, cpu_count
from runstate.sources.linux.grouping import GroupMode

_MEMBER_LABELS = {MemberCode.RUNNING: "running", MemberCode.RUNNABLE: "runnable",
                  MemberCode.BLOCKED: "blocked", MemberCode.UNSEEN: "lost",
                  MemberCode.UNKNOWN: "lost"}
_MEMBER_BUCKETS = ("running", "runnable", "blocked", "lost")
#: /proc states of a task that is neither running nor waiting for a CPU
_SLEEPING = frozenset("SDTtIPXZ")


def fork_grouping(mode: GroupMode) -> ForkGrouping:
    """How the kernel places tasks forked by members, matching the grouping mode."""
    if mode is GroupMode.PROCESS:
        return ForkGrouping.NEW_PROCESS
    if mode is GroupMode.THREAD:
        return ForkGrouping.NEW_THREAD
    return ForkGrouping.JOIN_PARENT


class BpfSource:
    """In-kernel accounting of a catalog's threads."""

    name = "bpf"

    def __init__(self, catalog: TaskCatalog) -> None:
        self.catalog = catalog
        self._acc = BpfAccounting(fork_grouping(catalog.mode))
        self.started_ns = time.monotonic_ns()  # again when the first groups count
        self.n_cpus = cpu_count()
        self._empty_before: set[int] = set()
        self._never_less = NeverLess()
        #: group ids of the last snapshot (as bytes), their order by key (None: in that
        #: order already), the keys and the names
        self._names: tuple[bytes, npt.NDArray[np.intp] | None, list[str],
                           list[str]] | None = None
        self._followed_tids = np.zeros(0, np.uint32)
        self._reads = TableReads(self._acc)
        #: member rows of each group at the last read of the member table
        self._members_of = np.zeros(0, np.int64)
        try:
            self._follow(catalog.initial)
        except BaseException:
            self._acc.close()
            raise

    def _follow(self, followed: list[Followed]) -> None:
        """Groups before members: a member's events may arrive as soon as it is in.

        New groups are held until all their members are counted, then released
        (their time starts then).
        """
        if not followed:
            return
        new = [gid for gid in sorted({f.group_id for f in followed})
               if self._acc.add_group(gid, held=True)]
        self._reads.added(new)
        self._acc.add_members({f.tid: f.group_id for f in followed})
        self._acc.count_new_members()
        for tid in self._acc.uncounted([f.tid for f in followed]):
            self._count_from_proc(tid)
        if followed is self.catalog.initial:
            self.started_ns = time.monotonic_ns()
        for gid in new:
            self._acc.release(gid)

    def _count_from_proc(self, tid: int) -> None:
        """A member the task iterator did not reach: sleeping per /proc is blocked; a
        running or runnable one is unknown (its domain lost) until its next event."""
        state = self.catalog.names.start_state.get(tid, "R")
        self._acc.set_state(tid, MemberCode.BLOCKED if state in _SLEEPING
                            else MemberCode.UNKNOWN)

    def refresh(self) -> None:
        """Follow threads that appeared since the last refresh."""
        self._follow(self.catalog.rescan())

    def snapshot(self, with_members: bool = True, at_ns: int | None = None) -> LiveSnapshot:
        """The counters now (``at_ns`` is not used: the kernel's counters are read
        when asked, so the caller asks at the moment it wants).

        The work of a quiet interval is a read of the groups and arithmetic on
        their columns: the member table is read again (:mod:`.reads`), and the
        groups named again, only when they changed.
        """
        read = self._reads.read(with_members)
        counters, now, fresh = read.counters, read.time_ns, read.fresh_members
        if fresh:
            self._members_of = members_per_group(counters)
        group_ids, table = group_table(counters, now, self._members_of)
        same = self._names is not None and self._names[0] == group_ids.tobytes()
        totals = self._never_less.apply(group_ids, table.totals_ns, same)
        order, keys, names = self._named(group_ids, same)
        if order is not None:
            table, group_ids = table.take(order), group_ids[order]
        table = DomainTable(keys, names, table.members, table.state, table.since_ns,
                            totals if order is None else totals[order], table.member_ns,
                            table.missed, table.changes)
        rows = self._member_rows(counters, group_ids, now) if with_members else None
        if fresh:
            self._drop_finished(counters, self._members_of)
        else:  # every group has members: none is finished
            self._empty_before = set()
        return LiveSnapshot(time_ns=now, started_ns=self.started_ns, source=self.name,
                            n_cpus=self.n_cpus, lost_events=0,
                            domains=TableDomains(table, rows), notes=self._notes(counters))

    def _notes(self, counters: Counters) -> tuple[str, ...]:
        notes: list[str] = []
        if counters.dropped_members:
            notes.append(f"{counters.dropped_members} new tasks not followed: member table full")
        unknown = int(np.maximum(counters.groups["n_unknown"], 0).sum())
        if unknown:
            notes.append(f"{unknown} followed threads in an unknown state until their "
                         "next event (their domains are lost meanwhile)")
        return tuple(notes)

    def _named(self, group_ids: npt.NDArray[np.int64], same: bool
               ) -> tuple[npt.NDArray[np.intp] | None, list[str], list[str]]:
        """The order of the groups by domain key (None: they are in it), with keys and
        names in that order (kept from the last snapshot while the groups are the
        ``same``)."""
        if same and self._names is not None:
            return self._names[1], self._names[2], self._names[3]
        named = [self.catalog.domain_of(gid) for gid in group_ids.tolist()]
        order = sorted(range(len(named)), key=lambda i: named[i][0])
        keys = [named[i][0] for i in order]
        names = [named[i][1] for i in order]
        index = None if order == list(range(len(order))) else np.array(order, np.intp)
        self._names = (group_ids.tobytes(), index, keys, names)
        return index, keys, names

    def _member_rows(self, c: Counters, group_ids: npt.NDArray[np.int64], now: int
                     ) -> list[tuple[LiveMember, ...]]:
        """Each group's member records, in the order of ``group_ids``."""
        by_group: dict[int, list[int]] = {}
        for row, gid in enumerate(c.members["group"].tolist()):
            by_group.setdefault(gid, []).append(row)
        return [tuple(self._member(c, r, now) for r in by_group.get(gid, []))
                for gid in group_ids.tolist()]

    def _member(self, c: Counters, row: int, now: int) -> LiveMember:
        tid = int(c.member_ids[row])
        m = c.members[row]
        code = MemberCode(int(m["state"]))
        totals = dict(zip(_MEMBER_BUCKETS, (int(v) for v in m["ns"]), strict=True))
        if code is not MemberCode.UNSEEN:
            totals[_MEMBER_BUCKETS[min(code, 3)]] += max(0, now - int(m["since"]))
        totals["offline"] = 0
        key, name = self.catalog.member_names(tid)
        return LiveMember(key=key, name=name, state=_MEMBER_LABELS[code], totals_ns=totals)

    def _drop_finished(self, c: Counters, members: npt.NDArray[np.int64]) -> None:
        """Groups without members are shown once more, then removed from the kernel."""
        empty = set(c.group_ids[(c.groups["members"] == 0) & (members == 0)].tolist())
        for gid in empty & self._empty_before:
            self._acc.remove_group(gid)
            self._reads.removed(gid)
        self._empty_before = empty - self._empty_before
        if len(self._followed_tids) != len(c.member_ids) or not np.array_equal(
                self._followed_tids, c.member_ids):
            self._followed_tids = c.member_ids.copy()
            self.catalog.forget_exited(set(c.member_ids.tolist()))

    def close(self) -> None:
        self._acc.close()
