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
  member ``c`` (named ``cpuC``) of the host-idle domain (key ``host-idle``, tag
  ``kind=host-idle``), running while the CPU is idle, blocked otherwise.

Chain check: every switch's prev must be the previous switch's next on that
CPU.  ftrace and perf silently lose some switches; when P switches out on CPU
c while ``curr[c]`` is Q, the converter inserts the missing ``Q -> P`` switch at
``max(last switch on c, last wakeup of P) + 1`` (``chain_repairs``):

* P was woken since it last blocked: its switch-in is placed right after the
  later of its wakeup and the CPU's last switch.  If its wakeup was lost too,
  it is placed after the CPU's last switch, the earliest it could have run
  (``switch_in_time_unknown``: an upper bound of its running time).
* Q is the idle task, or has passed ``sched_process_exit``: its new state is
  known (idle / gone).  Otherwise Q's state after the lost switch is told by
  Q's next event (a wakeup: it had blocked; a switch-in: it was runnable); the
  rows from that point are held back until then, for at most
  ``MAX_HELD_CHUNKS`` chunks, after which Q is taken as blocked
  (``chain_repairs_unproven``).
* A task switched in on one CPU while current on another left the first
  unseen; the first CPU's next switch is then no break.

Ring-buffer loss (:class:`LostEvents`) becomes a lost-data window; afterwards
every task's state is inferred afresh from its next event.

Rows a repair or loss inserts in the past are merged in by a stable sort of
the chunk's output; they are never placed before rows already yielded (a
loss that began earlier is shortened and counted: ``loss_window_clamped``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux import _schedwalk
from runstate.sources.linux.grouping import Grouping, make_grouping
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames

Row = tuple[int, int, int, int] | list[int]
#: rows are held back while a deferred switch-out is open for at most this many chunks
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
    "switch_in_time_unknown",  # ... where the switched-in task's wakeup was lost too
    "switch_out_not_running",  # prev was believed runnable/blocked/gone elsewhere
    "switch_in_not_runnable",  # next was believed blocked or running
    "wakeup_of_running",       # legal (ttwu_runnable) but a health signal
    "event_after_exit",        # a task seen again after its X/Z switch (pid reuse?)
    "lost_events",             # events the tracer says it dropped
    "loss_window_clamped",     # a loss began before rows already yielded: window shortened
    "time_backwards",          # an event older than one already converted
    "silent_runnable_unresolved",  # a task in R at record start never seen: left out
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


class ReferenceConverter:
    """Streaming conversion of :class:`SchedEvents` chunks into member state changes.

    The plain-Python statement of the rules; :class:`SchedConverter` runs the
    same state machine in C and is checked against this one.

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
        self._held = 0                          # chunks the open deferred rows were held for
        self._first_time: int | None = None     # first event's time
        for key, n in self.grouping.expected_members.items():
            self.registry.domain(key)
            self.registry.domains[self.registry.find_domain(key) or 0].expected_members = n

    # ---- public API ------------------------------------------------------------

    def feed(self, events: SchedEvents) -> EventBatch:
        """Convert one time-sorted chunk; returns the member rows it produces."""
        if self._first_time is None and len(events):
            self._first_time = int(events.time[0])
        rows = self._pending
        self._pending = []
        self._walk(events, rows)
        self._held = self._held + 1 if self._deferred else 0
        if self._deferred and self._held <= MAX_HELD_CHUNKS:
            cut = min(row[0] for row in self._deferred.values())
            self._pending = [r for r in rows if r[0] >= cut]
            rows = [r for r in rows if r[0] < cut]
        else:
            self._give_up_deferred()
        return self._emit(rows)

    def lost(self, loss: LostEvents) -> None:
        """Record a ring-buffer loss; its window goes out with the next output."""
        self._count("lost_events", loss.count if loss.count is not None else 1, loss.end_ns)
        if loss.begin_ns < self._floor:
            self._count("loss_window_clamped", 1, loss.begin_ns)
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
        self._silent_members(self._seen, set(self._last_switch))
        self._give_up_deferred()
        self._set_window(self._first_time, self._last_time)
        return self._emit(self._pending)

    def _set_window(self, first: int | None, last: int) -> None:
        """The trace window is [first event, last event] unless the source defines it."""
        if first is None:
            return
        if self.info.start_ns is None:
            self.info.start_ns = first
        if self.info.end_ns is None:
            self.info.end_ns = last

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
        self._held = 0

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
                transition(nkey, t, BLOCKED if nkey < 0 else RUNNABLE, RUNNING, rows)
                curr[c] = nkey
                last_switch[c] = t
                self._switches += 1
            elif kind in (wakeup, wakeup_new):
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
        if old in (RUNNING, RUNNABLE):
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
        # a pid-filtered trace misses the switches between untraced tasks: only
        # breaks that a traced task reveals are anomalies there
        count = not self.filtered or self._grouped(prev)
        if count:
            self._count("switch_chain_breaks", 1, t)
        at = self._last_switch.get(cpu, t - 1) + 1
        if prev >= 0:
            at = max(at, self._wakeup.get(prev, at - 1) + 1)
        at = min(max(at, self._floor), t)
        if cur == _VACATED:
            if count:
                self._count("chain_repairs", 1, t)
        elif cur < 0:
            if count:
                self._count("chain_repairs", 1, t)
            self._transition(cur, at, RUNNING, BLOCKED, rows)
        elif cur in self._exiting:
            if count:
                self._count("chain_repairs", 1, t)
            self._transition(cur, at, RUNNING, ABSENT, rows)
        else:
            self._defer(cur, at, rows, count)
        if count and prev >= 0 and self._state.get(prev) == BLOCKED:
            # its wakeup was lost too: it ran from some unknown time after ``at``
            self._count("switch_in_time_unknown", 1, t)
        self._transition(prev, at, BLOCKED if prev < 0 else RUNNABLE, RUNNING, rows)

    def _vacate(self, task: int, cpu: int, t: int) -> None:
        """``task`` switches in on ``cpu`` while current elsewhere: it left that CPU unseen."""
        for other, cur in self._curr.items():
            if cur == task and other != cpu:
                self._curr[other] = _VACATED
                self._last_switch[other] = max(self._last_switch.get(other, t), t)

    def _grouped(self, key: int) -> bool:
        """Whether task ``key`` belongs to a domain (without registering it)."""
        if key < 0:
            return not self.filtered
        return self.grouping.assign(key) is not None

    def _defer(self, task: int, at: int, rows: list[Row], count: bool = True) -> None:
        """``task`` left the CPU at ``at`` in a state its next event will tell."""
        if task in self._deferred:
            self._deferred.pop(task)[3] = BLOCKED
            self._count("chain_repairs_unproven", 1, at)
        self._state[task] = _UNKNOWN
        member = self._member_of(task)
        if member < 0:
            if count:
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
        if key < 0 and self.filtered:
            member = _NO_MEMBER
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
            return _NO_MEMBER
        self.registry.domain(where.domain_key, where.domain_name)
        return self.registry.member(where.domain_key, where.member_key, where.member_name)

    def _silent_members(self, seen: set[int], cpus_switched: set[int]) -> None:
        """Members with no event: their /proc start state, where the source knows it.

        ``R`` (running or runnable) for a task that never switched: it cannot have
        waited for a CPU while every CPU kept switching, so it was running on a
        CPU with no switch at all; if every CPU switched, it is not decidable:
        the member is left out and counted (``silent_runnable_unresolved``).
        """
        all_cpus = set(range(self.n_cpus)) if self.n_cpus is not None else set()
        idle_cpus = all_cpus - cpus_switched
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


#: counter names in the order of ``_schedwalk``'s counter array
COUNTERS = ("switch_chain_breaks", "chain_repairs", "chain_repairs_unproven",
            "switch_out_not_running", "switch_in_not_runnable", "wakeup_of_running",
            "event_after_exit", "time_backwards", "switch_in_time_unknown")
_G_LAST, _G_FLOOR, _G_SWITCHES, _G_OPEN = 0, 1, 2, 3
#: Linux's PID_MAX_LIMIT and a generous CPU count: anything beyond is damage
PID_LIMIT = 1 << 22
MAX_CPUS = 1 << 14
_NO_TIME = np.iinfo(np.int64).min


class SchedConverter(ReferenceConverter):
    """The converter used by the readers: :class:`ReferenceConverter`'s rules, run in C.

    Python maps pids (and each CPU's idle task) to dense task indices and keeps
    the per-task and per-CPU state in numpy arrays; ``_schedwalk.walk`` runs the
    state machine over a chunk and appends rows keyed by task.  Members are
    registered here, in order of their first row, exactly as the reference does.
    """

    def __init__(self, path: str, registry: Registry, info: SourceInfo, names: TaskNames,
                 options: ReadOptions, n_cpus: int | None = None,
                 active: set[int] | None = None, filtered: bool = False) -> None:
        super().__init__(path, registry, info, names, options, n_cpus, active, filtered)
        self._dense: dict[int, int] = {}          # task key -> dense index
        self._pid_table = np.full(0, -1, np.int32)  # pid -> dense index
        self._keys: list[int] = []                # dense index -> task key
        self._t_state = np.zeros(0, np.int8)
        self._t_grouped = np.zeros(0, np.uint8)
        self._t_exiting = np.zeros(0, np.uint8)
        self._t_wakeup = np.zeros(0, np.int64)
        self._t_deferred = np.zeros(0, np.int64)
        self._t_member = np.zeros(0, np.int32)
        self._c_curr = np.zeros(0, np.int64)
        self._c_last = np.zeros(0, np.int64)
        self._c_idle = np.zeros(0, np.int64)
        self._counts = np.zeros(len(COUNTERS), np.int64)
        self._first = np.zeros(len(COUNTERS), np.int64)
        self._g = np.array([self._floor, self._floor, 0, 0, int(filtered)], np.int64)
        self._carry = _Rows.empty()
        self._held_chunks = 0
        self._extra: dict[str, int] = {}

    # ---- public API ------------------------------------------------------------

    def feed(self, events: SchedEvents) -> EventBatch:
        if self._first_time is None and len(events):
            self._first_time = int(events.time[0])
        a, b = self._task_columns(events)
        n_carry = len(self._carry)
        cap = n_carry + 4 * len(events) + 16  # a repaired switch makes up to 4 rows
        out = _Rows.alloc(cap)
        out.copy_in(self._carry)
        n = _schedwalk.walk(
            (events.time, events.cpu, events.kind, a, b, events.prev_state),
            (self._t_state, self._t_grouped, self._t_exiting, self._t_wakeup,
             self._t_deferred),
            (self._c_curr, self._c_last, self._c_idle),
            out.columns(), n_carry, (self._counts, self._first, self._g))
        rows = out.head(n)
        self._register_rows(rows)
        self._sync_counts()
        return self._split_and_emit(rows, len(events))

    def lost(self, loss: LostEvents) -> None:
        self._count("lost_events", loss.count if loss.count is not None else 1, loss.end_ns)
        self._give_up_open(self._carry)
        if loss.begin_ns < int(self._g[_G_FLOOR]):
            self._count("loss_window_clamped", 1, loss.begin_ns)
        begin = max(loss.begin_ns, int(self._g[_G_FLOOR]))
        end = max(loss.end_ns, begin)
        markers = _Rows.from_lists([begin, end], [-1, -1], [0, 0], [LOSS_BEGIN, LOSS_END])
        self._carry = _Rows.concat([self._carry, markers])
        self._t_state[:] = _UNKNOWN
        self._c_curr[:] = -1

    def finish(self) -> EventBatch:
        if int(self._g[_G_SWITCHES]) == 0:
            raise InputError(self.path, "no sched_switch events in the trace; runstate needs "
                             + ", ".join(NEEDED_EVENTS) + "; " + RECORD_HINT)
        switched = {c for c, t in enumerate(self._c_last.tolist()) if t != _NO_TIME}
        self._silent_members(self._seen, switched)
        self._give_up_open(self._carry)
        self._set_window(self._first_time, int(self._g[_G_LAST]))
        rows, self._carry = self._carry, _Rows.empty()
        return self._emit_rows(rows)

    # ---- tasks -----------------------------------------------------------------

    def _task_columns(self, ev: SchedEvents) -> tuple[npt.NDArray[np.int32],
                                                      npt.NDArray[np.int32]]:
        """Dense task indices for the pid and other_pid columns (-1: no task)."""
        if len(ev) == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        _check_range(self.path, "cpu", ev.cpu, MAX_CPUS)
        _check_range(self.path, "pid", ev.pid, PID_LIMIT)
        _check_range(self.path, "pid", ev.other_pid, PID_LIMIT)
        switch = ev.kind == int(SchedKind.SWITCH)
        self._grow_cpus(int(ev.cpu.max()) + 1)
        pa = ev.pid
        pb = np.where(switch, ev.other_pid, -1)
        top = int(max(pa.max(), pb.max())) + 1
        if top > self._pid_table.shape[0]:
            table = np.full(max(top, 2 * self._pid_table.shape[0]), -1, np.int32)
            table[: self._pid_table.shape[0]] = self._pid_table
            self._pid_table = table
        table = self._pid_table
        for col in (pa, pb):
            pos = col[col > 0]
            new = pos[table[pos] < 0]
            for pid in np.unique(new).tolist():
                table[pid] = self._task(pid)
        idle = self._c_idle[ev.cpu].astype(np.int32)
        a = np.where(pa > 0, table[np.maximum(pa, 0)], -1).astype(np.int32)
        a = np.where(switch & (pa == 0), idle, a)
        b = np.where(pb > 0, table[np.maximum(pb, 0)], -1).astype(np.int32)
        b = np.where(switch & (pb == 0), idle, b)
        return np.ascontiguousarray(a), np.ascontiguousarray(b)

    def _task(self, key: int) -> int:
        index = self._dense.get(key)
        if index is None:
            index = len(self._keys)
            self._dense[key] = index
            self._keys.append(key)
            if index >= self._t_state.shape[0]:
                self._grow_tasks(max(64, 2 * index))
            self._t_grouped[index] = self._grouped(key)
        return index

    def _grow_tasks(self, n: int) -> None:
        def grown(a: npt.NDArray[Any], fill: int) -> npt.NDArray[Any]:
            out = np.full(n, fill, a.dtype)
            out[: a.shape[0]] = a
            return out
        self._t_state = grown(self._t_state, _UNKNOWN)
        self._t_grouped = grown(self._t_grouped, 0)
        self._t_exiting = grown(self._t_exiting, 0)
        self._t_wakeup = grown(self._t_wakeup, _NO_TIME)
        self._t_deferred = grown(self._t_deferred, -1)
        self._t_member = grown(self._t_member, -1)

    def _grow_cpus(self, n: int) -> None:
        old = self._c_curr.shape[0]
        if n <= old:
            return
        self._c_curr = np.concatenate([self._c_curr, np.full(n - old, -1, np.int64)])
        self._c_last = np.concatenate([self._c_last, np.full(n - old, _NO_TIME, np.int64)])
        self._c_idle = np.concatenate([self._c_idle, np.full(n - old, -1, np.int64)])
        for cpu in range(old, n):
            self._c_idle[cpu] = self._task(-1 - cpu)

    def _register_rows(self, rows: _Rows) -> None:
        """Register members in order of their first row, as the reference does."""
        tasks = rows.task[rows.task >= 0]
        new = tasks[self._t_member[tasks] < 0]
        if new.size == 0:
            return
        uniq, first = np.unique(new, return_index=True)
        for task in uniq[np.argsort(first)].tolist():
            self._t_member[task] = self._member_of(self._keys[task])

    # ---- output ----------------------------------------------------------------

    def _split_and_emit(self, rows: _Rows, n_events: int) -> EventBatch:
        """Hold back rows from the earliest open deferred switch-out on, within limits."""
        open_rows = self._t_deferred[self._t_deferred >= 0]
        self._held_chunks = self._held_chunks + 1 if open_rows.size else 0
        if open_rows.size and self._held_chunks <= MAX_HELD_CHUNKS:
            cut = int(rows.time[open_rows].min())
            keep = rows.time >= cut
            new_index = np.cumsum(keep) - 1
            tasks = np.flatnonzero(self._t_deferred >= 0)
            self._t_deferred[tasks] = new_index[self._t_deferred[tasks]]
            self._carry = rows.take(keep)
            return self._emit_rows(rows.take(~keep))
        self._give_up_open(rows)
        self._carry = _Rows.empty()
        return self._emit_rows(rows)

    def _give_up_open(self, rows: _Rows) -> None:
        tasks = np.flatnonzero(self._t_deferred >= 0)
        if tasks.size == 0:
            return
        rows.new[self._t_deferred[tasks]] = BLOCKED
        self._t_state[tasks] = BLOCKED
        self._t_deferred[tasks] = -1
        self._g[_G_OPEN] = 0
        self._held_chunks = 0
        self._count("chain_repairs_unproven", int(tasks.size), None)

    def _emit_rows(self, rows: _Rows) -> EventBatch:
        if len(rows) == 0:
            return EventBatch.empty()
        floor = int(self._g[_G_FLOOR])
        time = np.maximum(rows.time, floor)
        order = np.argsort(time, kind="stable")
        member = np.where(rows.task >= 0, self._t_member[np.maximum(rows.task, 0)], -1)
        keep = (rows.task < 0) | (member >= 0)
        order = order[keep[order]]
        batch = EventBatch.from_columns(time[order], member[order], rows.old[order],
                                        rows.new[order])
        if len(batch):
            self._g[_G_FLOOR] = int(batch.time[-1])
            self._floor = int(batch.time[-1])
        return batch

    def _sync_counts(self) -> None:
        for i in np.flatnonzero(self._counts).tolist():
            name = COUNTERS[i]
            self.info.anomalies[name] = int(self._counts[i]) + self._extra.get(name, 0)
            if self.strict:
                raise InputError(self.path, f"trace anomaly {name} at t={int(self._first[i])} "
                                 "ns (--strict makes anomalies fatal)")

    def _count(self, name: str, n: int, t: int | None) -> None:
        self._extra[name] = self._extra.get(name, 0) + n
        super()._count(name, n, t)


@dataclass(slots=True)
class _Rows:
    """Output rows keyed by dense task (``task == -1``: a loss marker)."""

    time: npt.NDArray[np.int64]
    task: npt.NDArray[np.int32]
    old: npt.NDArray[np.int8]
    new: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @classmethod
    def alloc(cls, n: int) -> _Rows:
        return cls(np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.int8),
                   np.empty(n, np.int8))

    @classmethod
    def empty(cls) -> _Rows:
        return cls.alloc(0)

    @classmethod
    def from_lists(cls, time: list[int], task: list[int], old: list[int], new: list[int]
                   ) -> _Rows:
        return cls(np.array(time, np.int64), np.array(task, np.int32),
                   np.array(old, np.int8), np.array(new, np.int8))

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        return _Rows(*(np.concatenate([getattr(p, c) for p in parts])
                       for c in ("time", "task", "old", "new")))

    def copy_in(self, other: _Rows) -> None:
        n = len(other)
        self.time[:n], self.task[:n], self.old[:n], self.new[:n] = \
            other.time, other.task, other.old, other.new

    def columns(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.time, self.task, self.old, self.new)

    def head(self, n: int) -> _Rows:
        return _Rows(self.time[:n], self.task[:n], self.old[:n], self.new[:n])

    def take(self, mask: npt.NDArray[np.bool_]) -> _Rows:
        return _Rows(self.time[mask], self.task[mask], self.old[mask], self.new[mask])



def _check_range(path: str, what: str, column: npt.NDArray[np.int32], limit: int) -> None:
    """Values a damaged file may carry must not size arrays: refuse them."""
    if column.size and (int(column.min()) < -1 or int(column.max()) >= limit):
        bad = int(column.max()) if int(column.max()) >= limit else int(column.min())
        raise InputError(path, f"{what} {bad} out of range (damaged trace?)")


Item = SchedEvents | LostEvents


def sched_batches(path: str, items: Iterable[Item], names: TaskNames, registry: Registry,
                  info: SourceInfo, options: ReadOptions, n_cpus: int | None = None,
                  reference: bool = False, active: set[int] | None = None,
                  filtered: bool = False) -> Iterator[EventBatch]:
    """Convert a reader's stream of event chunks and losses into member batches.

    ``reference=True`` runs the plain-Python :class:`ReferenceConverter`.
    """
    cls = ReferenceConverter if reference else SchedConverter
    converter = cls(path, registry, info, names, options, n_cpus, active, filtered)
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
