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

from runstate.live.bpf.loader import BpfAccounting, Counters, ForkGrouping, MemberCode
from runstate.live.snapshot import LiveDomain, LiveMember, LiveSnapshot
from runstate.live.tasks import Followed, TaskCatalog, cpu_count
from runstate.model.states import DomainState
from runstate.sources.linux.grouping import GroupMode

_MEMBER_LABELS = {MemberCode.RUNNING: "running", MemberCode.RUNNABLE: "runnable",
                  MemberCode.BLOCKED: "blocked", MemberCode.UNSEEN: "lost",
                  MemberCode.UNKNOWN: "lost"}
_BUCKETS = ("running", "runnable", "blocked")
_MEMBER_BUCKETS = ("running", "runnable", "blocked", "lost")
#: /proc states of a task that is neither running nor waiting for a CPU
_SLEEPING = frozenset("SDTtIPXZ")
#: a read of the tables that takes longer than this (descheduled) is repeated
MAX_READ_NS = 2_000_000
READ_ATTEMPTS = 4


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
        self.started_ns = time.monotonic_ns()
        self._empty_before: set[int] = set()
        self._last_totals: dict[str, dict[DomainState, int]] = {}
        try:
            self._follow(catalog.initial)
        except BaseException:
            self._acc.close()
            raise

    def _follow(self, followed: list[Followed]) -> None:
        """Groups before members: a member's events may arrive as soon as it is in."""
        if not followed:
            return
        for group_id in sorted({f.group_id for f in followed}):
            self._acc.add_group(group_id)
        self._acc.add_members({f.tid: f.group_id for f in followed})
        self._acc.count_new_members()
        for tid in self._acc.uncounted([f.tid for f in followed]):
            self._count_from_proc(tid)

    def _count_from_proc(self, tid: int) -> None:
        """A member the task iterator did not reach: sleeping per /proc is blocked; a
        running or runnable one is unknown (its domain lost) until its next event."""
        state = self.catalog.names.start_state.get(tid, "R")
        self._acc.set_state(tid, MemberCode.BLOCKED if state in _SLEEPING
                            else MemberCode.UNKNOWN)

    def refresh(self) -> None:
        """Follow threads that appeared since the last refresh."""
        self._follow(self.catalog.rescan())

    def snapshot(self, with_members: bool = True) -> LiveSnapshot:
        counters, now = self._read_at_a_moment()
        domains = self._domains(counters, now, with_members)
        self._drop_finished(counters)
        notes: list[str] = []
        if counters.dropped_members:
            notes.append(f"{counters.dropped_members} new tasks not followed: member table full")
        unknown = int(np.count_nonzero(counters.members["state"] == MemberCode.UNKNOWN))
        if unknown:
            notes.append(f"{unknown} followed threads in an unknown state until their "
                         "next event (their domains are lost meanwhile)")
        return LiveSnapshot(time_ns=now, started_ns=self.started_ns, source=self.name,
                            n_cpus=cpu_count(), lost_events=0, domains=domains,
                            notes=tuple(notes))

    def _read_at_a_moment(self) -> tuple[Counters, int]:
        """The tables and the time they were read.

        The read is repeated (a few times at most) when this process was
        descheduled during it, so the moment is a precise one.
        """
        for _ in range(READ_ATTEMPTS):
            begin = time.monotonic_ns()
            counters = self._acc.read()
            if time.monotonic_ns() - begin <= MAX_READ_NS:
                break
        # stays are extended to the time before the read: a change the read already
        # holds was stamped later, so no total can exceed what a later read will show
        return counters, begin

    def _domains(self, c: Counters, now: int, with_members: bool) -> tuple[LiveDomain, ...]:
        by_group: dict[int, list[int]] = {}
        for row, gid in enumerate(c.members["group"].tolist()):
            by_group.setdefault(gid, []).append(row)
        result = []
        for row, gid in enumerate(c.group_ids.tolist()):
            g = c.groups[row]
            rows = by_group.get(gid, [])
            if not rows and int(g["state"]) < 0 and int(g["first_ns"]) == 0:
                continue  # never had a counting member
            key, name = self.catalog.domain_of(gid)
            members = tuple(self._member(c, r, now) for r in rows) if with_members else ()
            domain = _domain(key, name, len(rows), g, now, members)
            result.append(self._never_less(domain))
        result.sort(key=lambda d: d.key)
        return tuple(result)

    def _never_less(self, domain: LiveDomain) -> LiveDomain:
        """Totals that never go down between snapshots.

        A handler reads the clock before it takes the group's lock; if this
        process read the group in between, the open stay it extended may end a
        few microseconds earlier than assumed.  The difference is kept out.
        """
        last = self._last_totals.get(domain.key)
        if last is not None:
            for state, value in last.items():
                if domain.totals_ns[state] < value:
                    domain.totals_ns[state] = value
        self._last_totals[domain.key] = dict(domain.totals_ns)
        return domain

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

    def _drop_finished(self, c: Counters) -> None:
        """Groups without members are shown once more, then removed from the kernel."""
        empty = {int(gid) for gid, n in zip(c.group_ids.tolist(),
                                            c.groups["members"].tolist(), strict=True)
                 if n == 0} - set(c.members["group"].tolist())
        for gid in empty & self._empty_before:
            if int(gid) < 0:
                continue
            self._acc.remove_group(gid)
        self._empty_before = empty - self._empty_before
        self.catalog.forget_exited(set(c.member_ids.tolist()))

    def close(self) -> None:
        self._acc.close()


_STATES = tuple(DomainState)


def _domain(key: str, name: str, n_members: int, g: np.void, now: int,
            members: tuple[LiveMember, ...]) -> LiveDomain:
    totals = dict(zip(_STATES, g["ns"].tolist(), strict=True))
    state_code = int(g["state"])
    current = None if state_code < 0 else DomainState(state_code)
    since = None if current is None else int(g["since"])
    if current is not None and since is not None:
        totals[current] += max(0, now - since)
    member_ns = {b: int(g["member_ns"][i]) for i, b in enumerate(_BUCKETS)}
    if int(g["mlast"]):
        elapsed = max(0, now - int(g["mlast"]))
        for i, field in enumerate(("n_running", "n_runnable", "n_blocked")):
            member_ns[_BUCKETS[i]] += elapsed * max(0, int(g[field]))
    return LiveDomain(key=key, name=name, members=n_members, current_state=current,
                      since_ns=since, totals_ns=totals, missed=int(g["missed"]),
                      member_rows=members, member_ns=member_ns, changes=int(g["changes"]))
