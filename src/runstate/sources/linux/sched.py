"""Scheduler tracepoint events -> member state changes, with the per-CPU switch-chain repair.

Every Linux reader decodes its input into :class:`SchedEvents` chunks and
feeds them to a :class:`SchedConverter`, which yields
:class:`~runstate.model.events.EventBatch` rows for the members of a
:class:`~runstate.sources.linux.grouping.Grouping` (linux-tracing.md §1.3-1.6):

* ``sched_switch``: prev leaves the CPU: runnable if ``prev_state & 0xff == 0``
  (R, R+), gone (ABSENT) if ``prev_state & 0x30`` (X, Z), blocked otherwise;
  next becomes running.
* ``sched_wakeup`` / ``sched_wakeup_new``: blocked (or new) -> runnable; a
  wakeup of a running or runnable task changes nothing.
* A task's state before its first event is what that event implies.
* The idle task (pid 0) of each CPU is no group's member; instead CPU ``c`` is
  member ``cpuC`` of the host-idle domain, running while the CPU is idle.

Chain check: every switch's prev must be the previous switch's next on that
CPU.  ftrace and perf silently lose some switches; when P switches out on CPU
c while ``curr[c]`` is Q, the converter inserts the missing ``Q -> P`` switch at
``max(last switch on c, last wakeup of P) + 1``.  That is provable for P; for
Q only when Q is the idle task (its successor on the CPU tells the rest).  A
grouped Q's state after the lost switch is unknown, so that span becomes a
lost-data window and Q's next event tells its state again.

Ring-buffer loss (:class:`LostEvents`) becomes a lost-data window; afterwards
every task's state is inferred afresh from its next event.

Rows a repair or loss inserts in the past are merged in by a stable sort of
the chunk's output; they are never placed before rows already yielded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.grouping import Grouping, make_grouping
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames

Row = tuple[int, int, int, int] | list[int]
#: rows held back while a deferred switch-out is open, at most this many chunks' worth
MAX_HELD_CHUNKS = 4

RUNNING = int(MemberState.RUNNING)
RUNNABLE = int(MemberState.RUNNABLE)
BLOCKED = int(MemberState.BLOCKED)
ABSENT = int(MemberState.ABSENT)
#: converter-internal: nothing known yet (the next event tells the old state)
_UNKNOWN = -1
#: ``curr[cpu]`` when its task was seen switching in on another CPU (switch-out lost)
_VACATED = -(1 << 40)
#: cache marker: the task belongs to no group
_NO_MEMBER = -1

HOST_IDLE_KEY = "host-idle"

#: the anomaly counters this module fills (SourceInfo.anomalies)
ANOMALIES = (
    "switch_chain_breaks",     # a switch's prev is not the CPU's current task
    "chain_repairs",           # missing switch-ins inserted
    "chain_repairs_unproven",  # ... where the switched-out member's state stays unknown
    "switch_out_not_running",  # prev was believed runnable/blocked/gone elsewhere
    "switch_in_not_runnable",  # next was believed blocked or running
    "wakeup_of_running",       # legal (ttwu_runnable) but a health signal
    "event_after_exit",        # a task seen again after its X/Z switch (pid reuse?)
    "lost_events",             # events the tracer says it dropped
    "time_backwards",          # an event older than one already converted
)

NEEDED_EVENTS = ("sched:sched_switch", "sched:sched_wakeup", "sched:sched_wakeup_new")
RECORD_HINT = ("record them with: perf record -k mono -e sched:sched_switch,sched:sched_wakeup,"
               "sched:sched_wakeup_new,sched:sched_process_exit,sched:sched_process_fork "
               "-a -- <workload>  (or 'runstate record')")


@dataclass(frozen=True, slots=True)
class LostEvents:
    """The tracer dropped events on ``cpu`` between ``begin_ns`` and ``end_ns``."""

    cpu: int
    begin_ns: int
    end_ns: int
    #: number of events dropped, if the tracer says
    count: int | None = None


def prev_state_after(prev_state: int) -> int:
    """The member state a ``sched_switch`` prev_state value leaves the task in."""
    if prev_state & 0xFF == 0:
        return RUNNABLE
    if prev_state & 0x30:
        return ABSENT
    return BLOCKED


class SchedConverter:
    """Streaming conversion of :class:`SchedEvents` chunks into member state changes.

    Args:
        path: the input, for error messages.
        registry: where members are registered (deterministically: in order of
            first appearance, so a second pass over the same input agrees).
        info: receives anomaly counts, notes and initial states of silent members.
        names: complete thread names and groups (readers scan them first).
        options: ``group`` picks the grouping; ``strict`` makes anomalies fatal.
    """

    def __init__(self, path: str, registry: Registry, info: SourceInfo, names: TaskNames,
                 options: ReadOptions, n_cpus: int | None = None) -> None:
        self.path = path
        self.n_cpus = n_cpus
        self.registry = registry
        self.info = info
        self.names = names
        self.strict = options.strict
        self.grouping: Grouping = make_grouping(options.group, names)
        self._state: dict[int, int] = {}       # task key -> state (idle of cpu c: -1 - c)
        self._member: dict[int, int] = {}      # task key -> member index or _NO_MEMBER
        self._wakeup: dict[int, int] = {}      # pid -> time of its last sched_wakeup
        self._curr: dict[int, int] = {}        # cpu -> task key current there
        self._last_switch: dict[int, int] = {}  # cpu -> time of its last switch
        self._floor = -(1 << 62)               # rows may not go below this (already yielded)
        self._last_time = self._floor
        self._pending: list[Row] = []
        self._switches = 0
        self._seen: set[int] = set()
        self._exiting: set[int] = set()        # pids seen in sched_process_exit
        self._deferred: dict[int, list[int]] = {}  # task -> its switch-out row, new state open
        for key, n in self.grouping.expected_members.items():
            self.registry.domain(key)
            self.registry.domains[self.registry.find_domain(key) or 0].expected_members = n

    # ---- public API ------------------------------------------------------------

    def feed(self, events: SchedEvents) -> EventBatch:
        """Convert one time-sorted chunk; returns the member rows it produces."""
        rows = self._pending
        self._pending = []
        self._walk(events, rows)
        if self._deferred and len(rows) <= MAX_HELD_CHUNKS * max(len(events), 1 << 16):
            cut = min(row[0] for row in self._deferred.values())
            self._pending = [r for r in rows if r[0] >= cut]
            rows = [r for r in rows if r[0] < cut]
        else:
            self._give_up_deferred()
        return self._emit(rows)

    def lost(self, loss: LostEvents) -> None:
        """Record a ring-buffer loss; its window goes out with the next output."""
        self._count("lost_events", loss.count if loss.count is not None else 1, loss.end_ns)
        begin = max(loss.begin_ns, self._floor)
        end = max(loss.end_ns, begin)
        self._pending.append((begin, -1, 0, LOSS_BEGIN))
        self._pending.append((end, -1, 0, LOSS_END))
        self._forget_all()

    def finish(self) -> EventBatch:
        """Flush pending rows; register silent members with known start states."""
        if self._switches == 0:
            raise InputError(self.path, "no sched_switch events in the trace; runstate needs "
                             + ", ".join(NEEDED_EVENTS) + "; " + RECORD_HINT)
        self._silent_members()
        self._give_up_deferred()
        return self._emit(self._pending)

    def _give_up_deferred(self) -> None:
        """Deferred switch-outs still open after a long silence: assume the task blocked.

        A runnable task would have been switched in again long before; one that
        never shows up again most likely sleeps.  Counted as unproven.
        """
        for task, row in self._deferred.items():
            row[3] = BLOCKED
            self._count("chain_repairs_unproven", 1, row[0])
            self._state[task] = BLOCKED
        self._deferred.clear()

    # ---- the per-event state machine --------------------------------------------

    def _walk(self, ev: SchedEvents, rows: list[Row]) -> None:
        times = ev.time.tolist()
        cpus = ev.cpu.tolist()
        kinds = ev.kind.tolist()
        pids = ev.pid.tolist()
        others = ev.other_pid.tolist()
        pstates = ev.prev_state.tolist()
        switch, wakeup, wakeup_new, fork, exit_ = (
            int(SchedKind.SWITCH), int(SchedKind.WAKEUP), int(SchedKind.WAKEUP_NEW),
            int(SchedKind.FORK), int(SchedKind.EXIT))
        curr = self._curr
        last_switch = self._last_switch
        transition = self._transition
        last = self._last_time
        for i, t in enumerate(times):
            if t < last:
                self._count("time_backwards", 1, t)
                t = last
            last = t
            kind = kinds[i]
            if kind == switch:
                c = cpus[i]
                prev, nxt = pids[i], others[i]
                pkey = prev if prev != 0 else -1 - c
                nkey = nxt if nxt != 0 else -1 - c
                cur = curr.get(c)
                if cur is not None and cur != pkey:
                    self._repair(c, cur, pkey, t, rows)
                ps = pstates[i]
                after = RUNNABLE if ps & 0xFF == 0 else (ABSENT if ps & 0x30 else BLOCKED)
                if pkey < 0:
                    after = BLOCKED
                transition(pkey, t, RUNNING, after, rows)
                if nkey >= 0 and self._state.get(nkey) == RUNNING:
                    self._vacate(nkey, c, t)
                transition(nkey, t, RUNNABLE, RUNNING, rows)
                curr[c] = nkey
                last_switch[c] = t
                self._switches += 1
            elif kind == wakeup or kind == wakeup_new:
                pid = pids[i]
                if pid <= 0:
                    continue
                self._wakeup[pid] = t
                self._wake(pid, t, kind == wakeup_new, rows)
            elif kind == exit_:
                self._exiting.add(pids[i])
            elif kind == fork:
                child = pids[i]
                if child > 0 and child not in self._deferred \
                        and self._state.get(child, _UNKNOWN) in (_UNKNOWN, ABSENT):
                    self._state[child] = ABSENT
                    self._exiting.discard(child)
        self._last_time = last

    def _transition(self, key: int, t: int, expected: int, new: int,
                    rows: list[Row]) -> None:
        """Move task ``key`` to ``new``; ``expected`` is what the event implies it was."""
        old = self._state.get(key, _UNKNOWN)
        if old == _UNKNOWN:
            old = expected
            if key in self._deferred:
                self._resolve(key, old)
                old = RUNNABLE if old == RUNNING else old
        elif old != expected:
            if old == ABSENT:
                self._count("event_after_exit", 1, t)
            elif expected == RUNNING:
                self._count("switch_out_not_running", 1, t)
            else:
                self._count("switch_in_not_runnable", 1, t)
        self._state[key] = new
        if old != new:
            member = self._member_of(key)
            if member >= 0:
                rows.append((t, member, old, new))

    def _wake(self, pid: int, t: int, new_task: bool,
              rows: list[Row]) -> None:
        old = self._state.get(pid, _UNKNOWN)
        if old == RUNNING or old == RUNNABLE:
            if old == RUNNING and not new_task:
                self._count("wakeup_of_running", 1, t)
            return
        if old == _UNKNOWN:
            old = ABSENT if new_task else BLOCKED
            if pid in self._deferred:
                old = BLOCKED
                self._resolve(pid, old)
        elif old == ABSENT and not new_task:
            self._count("event_after_exit", 1, t)
        self._state[pid] = RUNNABLE
        member = self._member_of(pid)
        if member >= 0:
            rows.append((t, member, old, RUNNABLE))

    def _repair(self, cpu: int, cur: int, prev: int, t: int,
                rows: list[Row]) -> None:
        """``prev`` switches out on ``cpu`` where ``cur`` was running: insert ``cur -> prev``."""
        self._count("switch_chain_breaks", 1, t)
        at = self._last_switch.get(cpu, t - 1) + 1
        if prev >= 0:
            at = max(at, self._wakeup.get(prev, at - 1) + 1)
        at = min(max(at, self._floor + 1), t)
        if cur == _VACATED:
            self._count("chain_repairs", 1, t)
        elif cur < 0:
            self._count("chain_repairs", 1, t)
            self._transition(cur, at, RUNNING, BLOCKED, rows)
        elif cur in self._exiting:
            self._count("chain_repairs", 1, t)
            self._transition(cur, at, RUNNING, ABSENT, rows)
        else:
            self._defer(cur, at, rows)
        self._transition(prev, at, RUNNABLE, RUNNING, rows)

    def _vacate(self, task: int, cpu: int, t: int) -> None:
        """``task`` switches in on ``cpu`` while current elsewhere: it left that CPU unseen."""
        for other, cur in self._curr.items():
            if cur == task and other != cpu:
                self._curr[other] = _VACATED
                self._last_switch[other] = max(self._last_switch.get(other, t), t)

    def _defer(self, task: int, at: int, rows: list[Row]) -> None:
        """``task`` left the CPU at ``at`` in a state its next event will tell."""
        if task in self._deferred:
            self._deferred.pop(task)[3] = BLOCKED
            self._count("chain_repairs_unproven", 1, at)
        self._state[task] = _UNKNOWN
        member = self._member_of(task)
        if member < 0:
            self._count("chain_repairs", 1, at)
            return
        row = [at, member, RUNNING, _UNKNOWN]
        rows.append(row)
        self._deferred[task] = row

    def _resolve(self, task: int, before: int) -> None:
        """The deferred switch-out of ``task`` is now known to have left it ``before``."""
        row = self._deferred.pop(task)
        row[3] = RUNNABLE if before == RUNNING else before
        self._count("chain_repairs", 1, None)

    # ---- members -------------------------------------------------------------

    def _member_of(self, key: int) -> int:
        member = self._member.get(key)
        if member is not None:
            return member
        if key < 0:
            cpu = -1 - key
            self.registry.domain(HOST_IDLE_KEY, "host idle")
            self.registry.domains[self.registry.find_domain(HOST_IDLE_KEY) or 0].tags["kind"] = \
                "host-idle"
            member = self.registry.member(HOST_IDLE_KEY, f"cpu{cpu}", f"cpu{cpu}")
        else:
            member = self._register(key)
        self._member[key] = member
        self._seen.add(key)
        return member

    def _register(self, tid: int) -> int:
        where = self.grouping.assign(tid)
        if where is None:
            return _NO_MEMBER
        self.registry.domain(where.domain_key, where.domain_name)
        return self.registry.member(where.domain_key, where.member_key, where.member_name)

    def _silent_members(self) -> None:
        """Members with no event: their /proc start state, where the source knows it.

        ``R`` (running or runnable) for a task that never switched: it cannot have
        waited for a CPU while every CPU kept switching, so it was running on a
        CPU with no switch at all; if every CPU switched, it is not decidable:
        the member is left out and counted (``silent_runnable_unresolved``).
        """
        all_cpus = set(range(self.n_cpus)) if self.n_cpus is not None else set()
        idle_cpus = all_cpus - set(self._last_switch)
        for tid in sorted(self.names.start_state):
            if tid in self._seen or tid <= 0:
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

    # ---- output -------------------------------------------------------------

    def _forget_all(self) -> None:
        self._give_up_deferred()
        self._state.clear()
        self._curr.clear()

    def _emit(self, rows: list[Row]) -> EventBatch:
        if not rows:
            return EventBatch.empty()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        np.maximum(arr[:, 0], self._floor, out=arr[:, 0])
        arr = arr[np.argsort(arr[:, 0], kind="stable")]
        batch = EventBatch.from_columns(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
        self._floor = int(arr[-1, 0])
        return batch

    def _count(self, name: str, n: int, t: int | None) -> None:
        self.info.count(name, n)
        if self.strict:
            when = "" if t is None else f" at t={t} ns"
            raise InputError(self.path, f"trace anomaly {name}{when} (--strict makes "
                             "anomalies fatal)")


Item = SchedEvents | LostEvents


def sched_batches(path: str, items: Iterable[Item], names: TaskNames, registry: Registry,
                  info: SourceInfo, options: ReadOptions, n_cpus: int | None = None
                  ) -> Iterator[EventBatch]:
    """Convert a reader's stream of event chunks and losses into member batches."""
    converter = SchedConverter(path, registry, info, names, options, n_cpus)
    for item in items:
        if isinstance(item, LostEvents):
            converter.lost(item)
            continue
        batch = converter.feed(item)
        if len(batch):
            yield batch
    batch = converter.finish()
    if len(batch):
        yield batch
