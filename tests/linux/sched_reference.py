"""The test-only reference model of the sched converter: the rules in plain Python.

:class:`ReferenceConverter` states, one event at a time, the rules that
:class:`runstate.sources.linux.sched.SchedConverter` runs in C
(``_schedwalk``); ``test_sched_fast`` checks that both give the same rows,
anomaly counts and members.  It is not part of the package: the readers have
one implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import (
    ABSENT,
    BLOCKED,
    MAX_HELD_CHUNKS,
    NEEDED_EVENTS,
    RECORD_HINT,
    RUNNABLE,
    RUNNING,
    UNKNOWN,
    Item,
    LostEvents,
    SchedConverter,
    convert_stream,
)
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames
from runstate.sources.linux.schedmembers import FLOOR_START, ConverterBase

Row = tuple[int, int, int, int] | list[int]
#: ``curr[cpu]`` when its task was seen switching in on another CPU (switch-out lost)
_VACATED = -(1 << 40)


class ReferenceConverter(ConverterBase):
    """Streaming conversion of :class:`SchedEvents` chunks into member state changes.

    The plain-Python statement of the rules; :class:`SchedConverter` runs the
    same state machine in C and is checked against this one.  Arguments as for
    :class:`~runstate.sources.linux.schedmembers.ConverterBase`.
    """

    def __init__(self, path: str, registry: Registry, info: SourceInfo, names: TaskNames,
                 options: ReadOptions, n_cpus: int | None = None,
                 active: set[int] | None = None, filtered: bool = False) -> None:
        super().__init__(path, registry, info, names, options, n_cpus, active, filtered)
        self._state: dict[int, int] = {}       # task key -> state (idle of cpu c: -1 - c)
        self._wakeup: dict[int, int] = {}      # pid -> time of its last sched_wakeup
        self._curr: dict[int, int] = {}        # cpu -> task key current there
        self._last_switch: dict[int, int] = {}  # cpu -> time of its last switch
        self._floor = FLOOR_START              # rows may not go below this (already yielded)
        self._last_time = self._floor
        self._pending: list[Row] = []
        self._switches = 0
        self._exiting: set[int] = set()        # pids seen in sched_process_exit
        self._deferred: dict[int, list[int]] = {}  # task -> its switch-out row, new state open
        self._held = 0                          # chunks the open deferred rows were held for

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
                        and self._state.get(child, UNKNOWN) in (UNKNOWN, ABSENT):
                    self._state[child] = ABSENT
                    self._exiting.discard(child)
        self._last_time = last

    def _transition(self, key: int, t: int, expected: int, new: int,
                    rows: list[Row]) -> None:
        """Move task ``key`` to ``new``; ``expected`` is what the event implies it was."""
        old = self._state.get(key, UNKNOWN)
        if old == UNKNOWN:
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
        old = self._state.get(pid, UNKNOWN)
        if old in (RUNNING, RUNNABLE):
            if old == RUNNING and not new_task:
                self._count("wakeup_of_running", 1, t)
            return
        if old == UNKNOWN:
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

    def _defer(self, task: int, at: int, rows: list[Row], count: bool = True) -> None:
        """``task`` left the CPU at ``at`` in a state its next event will tell."""
        if task in self._deferred:
            self._deferred.pop(task)[3] = BLOCKED
            self._count("chain_repairs_unproven", 1, at)
        self._state[task] = UNKNOWN
        member = self._member_of(task)
        if member < 0:
            if count:
                self._count("chain_repairs", 1, at)
            return
        row = [at, member, RUNNING, UNKNOWN]
        rows.append(row)
        self._deferred[task] = row

    def _resolve(self, task: int, before: int) -> None:
        """The deferred switch-out of ``task`` is now known to have left it ``before``."""
        row = self._deferred.pop(task)
        row[3] = RUNNABLE if before == RUNNING else before
        self._count("chain_repairs", 1, None)

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


def sched_batches(path: str, items: Iterable[Item], names: TaskNames, registry: Registry,
                  info: SourceInfo, options: ReadOptions, n_cpus: int | None = None,
                  reference: bool = False, active: set[int] | None = None,
                  filtered: bool = False) -> Iterator[EventBatch]:
    """The package's ``sched_batches``; ``reference=True`` runs :class:`ReferenceConverter`."""
    cls = ReferenceConverter if reference else SchedConverter
    converter = cls(path, registry, info, names, options, n_cpus, active, filtered)
    return convert_stream(converter, items)
