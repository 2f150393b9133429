"""Member bookkeeping of the sched converters: grouping, host-idle CPUs, silent members, anomalies.

:class:`ConverterBase` holds what the converter in :mod:`.sched` (and the
test-only reference model that it is checked against) shares besides the state
machine itself: it registers members deterministically, in order of first
appearance, so a second pass over the same input agrees; it maps each CPU's
idle task to a member of the host-idle domain; it gives members that never had
an event their ``/proc`` start state; and it counts anomalies (fatal under
``--strict``).
"""

from __future__ import annotations

from runstate.errors import InputError
from runstate.model.registry import Registry
from runstate.model.states import MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.grouping import Grouping, make_grouping
from runstate.sources.linux.schedevents import TaskNames

HOST_IDLE_KEY = "host-idle"
#: cache marker: the task belongs to no group
NO_MEMBER = -1
#: a header's CPU count is trusted for quiet CPUs up to this (beyond: damage)
MAX_HEADER_CPUS = 4096
#: rows may not go below the floor; this is its value before anything was yielded
FLOOR_START = -(1 << 62)


class ConverterBase:
    """Members, trace window and anomaly counts of a streaming sched converter.

    Args:
        path: the input, for error messages.
        registry: where members are registered (deterministically: in order of
            first appearance, so a second pass over the same input agrees).
        info: receives anomaly counts, notes and initial states of silent members.
        names: complete thread names and groups (readers scan them first).
        options: ``group`` picks the grouping; ``strict`` makes anomalies fatal.
        n_cpus: the trace's CPU count, if known (places silent runnable tasks).
        active: the tids that have events, if the reader knows them (picks the
            default grouping: vm only if a vCPU thread is active).
        filtered: the trace holds only some tasks' events (perf record without
            -a, a tracefs pid filter): switches between untraced tasks are
            missing, so only breaks a traced task reveals count, and the CPUs'
            idle time is unknown (no host-idle domain).
    """

    def __init__(self, path: str, registry: Registry, info: SourceInfo, names: TaskNames,
                 options: ReadOptions, n_cpus: int | None = None,
                 active: set[int] | None = None, filtered: bool = False) -> None:
        self.path = path
        self.filtered = filtered
        self.n_cpus = n_cpus
        self.registry = registry
        self.info = info
        self.names = names
        self.strict = options.strict
        self.grouping: Grouping = make_grouping(options.group, names, active)
        self._member: dict[int, int] = {}      # task key -> member index or NO_MEMBER
        self._seen: set[int] = set()
        self._first_time: int | None = None     # first event's time
        for key, n in self.grouping.expected_members.items():
            self.registry.domain(key)
            self.registry.domains[self.registry.find_domain(key) or 0].expected_members = n

    def _set_window(self, first: int | None, last: int) -> None:
        """The trace window is [first event, last event] unless the source defines it."""
        if first is None:
            return
        if self.info.start_ticks is None:
            self.info.start_ticks = first
        if self.info.end_ticks is None:
            self.info.end_ticks = last

    def _grouped(self, key: int) -> bool:
        """Whether task ``key`` belongs to a domain (without registering it)."""
        if key < 0:
            return not self.filtered
        return self.grouping.assign(key) is not None

    def _member_of(self, key: int) -> int:
        member = self._member.get(key)
        if member is not None:
            return member
        if key < 0 and self.filtered:
            member = NO_MEMBER
        elif key < 0:
            cpu = -1 - key
            self.registry.domain(HOST_IDLE_KEY, "host idle")
            self.registry.domains[self.registry.find_domain(HOST_IDLE_KEY) or 0].tags["kind"] = \
                "host-idle"
            member = self.registry.member(HOST_IDLE_KEY, str(cpu), f"cpu{cpu}")
        else:
            member = self._register(key)
        self._member[key] = member
        self._seen.add(key)
        return member

    def _register(self, tid: int) -> int:
        where = self.grouping.assign(tid)
        if where is None:
            return NO_MEMBER
        self.registry.domain(where.domain_key, where.domain_name)
        return self.registry.member(where.domain_key, where.member_key, where.member_name)

    def _silent_members(self, seen: set[int], cpus_switched: set[int],
                        cpus_seen: set[int] | None = None) -> None:
        """Members with no event: their /proc start state, where the source knows it.

        ``cpus_seen``: the CPUs with any event (default: those that switched).

        ``R`` (running or runnable) for a task that never switched: it cannot have
        waited for a CPU while every CPU kept switching, so it was running on a
        CPU with no switch at all; if every CPU switched, it is not decidable:
        the member is left out and counted (``silent_runnable_unresolved``).
        """
        cpus_seen = cpus_switched if cpus_seen is None else cpus_seen
        # a CPU with events but no switch, or one the header counts beyond those that
        # switched (never a set built from the header's count: it may be damaged)
        idle_cpus = bool(cpus_seen - cpus_switched) or (
            self.n_cpus is not None and len(cpus_switched) < self.n_cpus <= MAX_HEADER_CPUS)
        for tid in sorted(self.names.start_state):
            if tid in seen or tid <= 0:
                continue
            letter = self.names.start_state[tid][:1]
            if letter == "R" and not idle_cpus:
                self._count("silent_runnable_unresolved", 1, None)
                continue
            member = self._register(tid)
            if member < 0:
                continue
            state = MemberState.RUNNING if letter == "R" else MemberState.BLOCKED
            self.info.initial_states[member] = state

    def _quiet_cpus(self, cpus_seen: set[int], cpus_switched: set[int]) -> None:
        """Host-idle members for CPUs that never switched: what they ran is unknown.

        A CPU with no switch in the window ran one thing throughout, but whether
        that was its idle task the trace cannot say: the member is unknown for
        the whole window (shown as lost), never 0 % idle.  The CPUs are those with
        events, plus those the header counts when the count is plausible.
        """
        if self.filtered:
            return
        cpus = set(cpus_seen)
        if self.n_cpus is not None and self.n_cpus <= MAX_HEADER_CPUS:
            cpus.update(range(self.n_cpus))
        for cpu in sorted(cpus - cpus_switched):
            member = self._member_of(-1 - cpu)
            if member >= 0:
                self.info.initial_states.setdefault(member, MemberState.UNKNOWN)

    def _count(self, name: str, n: int, t: int | None) -> None:
        self.info.count(name, n)
        if self.strict:
            when = "" if t is None else f" at t={t} ns"
            raise InputError(self.path, f"trace anomaly {name}{when} (--strict makes "
                             "anomalies fatal)")
