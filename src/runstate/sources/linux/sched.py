"""Scheduler tracepoint events -> member state changes, with the per-CPU switch-chain repair.

Every Linux reader decodes its input into :class:`SchedEvents` chunks and
feeds them to a :class:`SchedConverter`, which yields
:class:`~runstate.model.events.EventBatch` rows for the members of a
:class:`~runstate.sources.linux.grouping.Grouping` (docs/linux.md):

* ``sched_switch``: prev leaves the CPU: runnable if ``prev_state & 0xff == 0``
  (R, R+), gone (ABSENT) if ``prev_state & 0x30`` (X, Z), blocked otherwise;
  next becomes running.
* ``sched_wakeup`` / ``sched_wakeup_new``: blocked (or new) -> runnable; a
  wakeup of a running or runnable task changes nothing.
* A task's state before its first event is what that event implies.
* The idle task (pid 0) of each CPU is no group's member; instead CPU ``c`` is
  member ``c`` (named ``cpuC``) of the host-idle domain (key ``host-idle``, tag
  ``kind=host-idle``), running while the CPU is idle, blocked otherwise.

Lost events are never filled in with a guess.  ftrace and perf silently drop
some switches and wakeups; what the trace then cannot decide becomes an
*undecidable span* of the member: its rows carry the engine's UNKNOWN state
from the earliest moment the missing event could have happened to the first
event proving what happened, so the member shows ``lost`` over it and so does
its domain.  The evidence that bounds a span is used:

* Chain check: every switch's prev must be the previous switch's next on that
  CPU.  When P switches out on CPU c while ``curr[c]`` is Q, the switch
  ``Q -> P`` was lost somewhere after the CPU's last switch, P's last wakeup
  and P's last switch-out elsewhere, and before P's switch-out
  (``switch_chain_breaks``, ``chain_repairs``).  Q is undecidable over that
  span, and so is P; if P was believed asleep (its wakeup was lost too,
  ``switch_in_time_unknown``) or running elsewhere, P's span starts at its own
  last event.
* After the span, Q is idle again (its idle task), gone (it passed
  ``sched_process_exit``), or told by its next event: a wakeup proves it had
  blocked by the end of the span.  A switch-in proves nothing (its wakeup may
  have been lost), so Q's span goes on up to it, as it does when no event
  comes within ``MAX_HELD_CHUNKS`` chunks (``chain_repairs_unproven``); the
  rows from the span's end on are held back meanwhile.
* Any other event recorded on CPU c proves that its actor (the task current
  there, ``common_pid``; readers that know it fill :attr:`SchedEvents.actor`)
  was running on c then: if c's current task is another, the switch to the
  actor was lost before it, and the spans end at that event instead of at the
  actor's next switch-out.  A timer event (``SchedKind.SEEN``, every scheduler
  tick among them) carries nothing but this evidence, so a task spinning alone
  on a CPU is found within a tick.  On a CPU of which nothing is known yet (the
  trace's start, or just after lost data) it tells the actor's state: one with
  no state yet was running since (as its switch-out would say); one believed
  runnable or blocked was switched in unseen after its last event.
* A switch-in of a task believed asleep: its wakeup was lost, some time after
  its last event (``switch_in_not_runnable``).  A switch-in of a task believed
  running on another CPU: it left that CPU unseen, some time after it got
  there; that CPU's next switch is then no break.
* A recorded wakeup of a task not known to be running is taken as what it
  says: the task was not running before it.  (A wakeup of a running task is
  legal, ``wakeup_of_running``; after a lost switch-in it would read as a real
  wakeup, which no sched event can tell apart.)

The length of each span is counted per domain and cause in
``SourceInfo.uncertain_ticks`` (``lost_switch``, ``lost_wakeup``).  Rows already
handed on cannot change: a span that would begin before them begins at them,
and the part before is counted as ``detected_late`` (uncertain, shown in the
state believed then).  Rows from each chunk's first event on are held back
until the next chunk, so this only happens for spans reaching further back.

Ring-buffer loss (:class:`LostEvents`) becomes a lost-data window; afterwards
every task's state is inferred afresh from its next event.

Rows a span or loss inserts in the past are merged in by a stable sort of the
chunk's output; they are never placed before rows already yielded (a loss
that began earlier is shortened and counted: ``loss_window_clamped``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from runstate._abi import check_constants, check_kernel
from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux import _schedwalk
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames
from runstate.sources.linux.schedkinds import NEEDED_EVENTS as NEEDED_EVENTS
from runstate.sources.linux.schedkinds import PID_LIMIT as PID_LIMIT
from runstate.sources.linux.schedkinds import RECORD_HINT as RECORD_HINT
from runstate.sources.linux.schedmembers import FLOOR_START, ConverterBase

check_kernel(_schedwalk)
check_constants(_schedwalk, {**{f"K_{kind.name}": int(kind) for kind in SchedKind},
                             "FR_LOSS_BEGIN": LOSS_BEGIN, "FR_LOSS_END": LOSS_END})

#: rows are held back while a deferred switch-out is open for at most this many chunks
MAX_HELD_CHUNKS = 4

RUNNING = int(MemberState.RUNNING)
RUNNABLE = int(MemberState.RUNNABLE)
BLOCKED = int(MemberState.BLOCKED)
ABSENT = int(MemberState.ABSENT)
#: converter-internal: nothing known yet (the next event tells the old state)
UNKNOWN = -1
#: in a span the trace cannot decide: rows carry the engine's UNKNOWN (shown as lost)
SPAN = int(MemberState.UNKNOWN)
#: why a span is undecidable, in the order of ``_schedwalk``'s per-task columns
SPAN_CAUSES = ("lost_switch", "lost_wakeup", "detected_late")

#: the anomaly counters this module fills (SourceInfo.anomalies)
ANOMALIES = (
    "switch_chain_breaks",     # a switch's prev is not the CPU's current task
    "chain_repairs",           # missing switch-ins inserted
    "chain_repairs_unproven",  # ... where the switched-out task's span goes on to its next event
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


#: counter names in the order of ``_schedwalk``'s counter array
COUNTERS = ("switch_chain_breaks", "chain_repairs", "chain_repairs_unproven",
            "switch_out_not_running", "switch_in_not_runnable", "wakeup_of_running",
            "event_after_exit", "time_backwards", "switch_in_time_unknown")
_G_LAST, _G_FLOOR, _G_SWITCHES, _G_OPEN = 0, 1, 2, 3
#: a generous CPU count: anything beyond is damage (PID_LIMIT: pids likewise)
MAX_CPUS = 1 << 14
_NO_TIME = np.iinfo(np.int64).min


class SchedConverter(ConverterBase):
    """The converter used by the readers: the rules above, run in C.

    Python numbers tasks (pids, and each CPU's idle task) densely as they appear
    and keeps the per-task and per-CPU state in numpy arrays; per chunk the C
    kernel ``_schedwalk`` finds the new pids, looks every pid up, runs the state
    machine and appends rows keyed by task, listing the tasks whose first row
    it wrote (Python registers their members, in that order), and hands on the
    finished rows in time order.  A chunk costs a few calls whatever its size.
    The test-only reference model
    (``tests/linux/sched_reference.py``) states the same rules in plain Python.
    Arguments as for :class:`~runstate.sources.linux.schedmembers.ConverterBase`.
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
        self._t_last_event = np.zeros(0, np.int64)
        self._t_span_from = np.zeros(0, np.int64)
        self._t_uncertain = np.zeros((0, len(SPAN_CAUSES)), np.int64)
        self._t_member = np.zeros(0, np.int32)
        self._c_curr = np.zeros(0, np.int64)
        self._c_last = np.zeros(0, np.int64)
        self._c_idle = np.zeros(0, np.int64)
        self._c_seen = np.zeros(0, np.uint8)  # CPUs with any event
        self._counts = np.zeros(len(COUNTERS), np.int64)
        self._first = np.zeros(len(COUNTERS), np.int64)
        self._g = np.array([FLOOR_START, FLOOR_START, 0, 0, int(filtered)], np.int64)
        self._carry = _Rows.empty()
        #: the rows buffer of the last chunk, while the carried rows are its first rows
        self._buffer: _Rows | None = None
        self._held_chunks = 0
        self._extra: dict[str, int] = {}

    # ---- public API ------------------------------------------------------------

    @property
    def held_back_since_ns(self) -> int | None:
        """Time of the earliest row held back for the next chunk (None when none is).

        A live reader shows figures only up to this time: the rows from here on
        are not handed out yet.
        """
        return int(self._carry.time.min()) if len(self._carry) else None

    def feed(self, events: SchedEvents) -> EventBatch:
        if self._first_time is None and len(events):
            self._first_time = int(events.time[0])
        actor = events.actors()
        self._add_tasks(events, actor)
        n_carry = len(self._carry)
        out = self._rows_for(n_carry + 8 * len(events) + 16)  # a repair makes up to 7 rows
        fresh = np.empty(self._t_member.shape[0], np.int32)
        n, n_fresh = _schedwalk.walk(
            (events.time, events.cpu, events.kind, events.pid, events.other_pid,
             events.prev_state, actor),
            (self._t_state, self._t_grouped, self._t_exiting, self._t_wakeup,
             self._t_deferred, self._t_last_event, self._t_span_from, self._t_uncertain),
            (self._c_curr, self._c_last, self._c_idle, self._c_seen),
            out.columns(), n_carry, (self._counts, self._first, self._g),
            (self._pid_table, self._t_member, fresh))
        rows = out.head(n)
        self._register_first_rows(fresh[:n_fresh])
        self._sync_counts()
        start = int(events.time[0]) if len(events) else int(self._g[_G_LAST])
        return self._split_and_emit(rows, start)

    def lost(self, loss: LostEvents) -> None:
        self._count("lost_events", loss.count if loss.count is not None else 1, loss.end_ns)
        self._give_up_open(self._carry)
        if loss.begin_ns < int(self._g[_G_FLOOR]):
            self._count("loss_window_clamped", 1, loss.begin_ns)
        begin = max(loss.begin_ns, int(self._g[_G_FLOOR]))
        end = max(loss.end_ns, begin)
        self._append_carried(
            _Rows.from_lists([begin, end], [-1, -1], [0, 0], [LOSS_BEGIN, LOSS_END]))
        self._close_spans(begin)
        self._t_state[:] = UNKNOWN
        self._c_curr[:] = -1

    def finish(self) -> EventBatch:
        if int(self._g[_G_SWITCHES]) == 0:
            raise InputError(self.path, "no sched_switch events in the trace; runstate needs "
                             + ", ".join(NEEDED_EVENTS) + "; " + RECORD_HINT)
        switched = {c for c, t in enumerate(self._c_last.tolist()) if t != _NO_TIME}
        cpus_seen = set(np.flatnonzero(self._c_seen).tolist())
        self._silent_members(self._seen, switched, cpus_seen)
        self._quiet_cpus(cpus_seen, switched)
        self._give_up_open(self._carry)
        self._set_window(self._first_time, int(self._g[_G_LAST]))
        self._close_spans(int(self._g[_G_LAST]))
        self._record_uncertain()
        rows, self._carry = self._carry, _Rows.empty()
        self._buffer = None
        return self._emit_rows(rows, None)[0]

    # ---- tasks -----------------------------------------------------------------

    def _add_tasks(self, ev: SchedEvents, actor: npt.NDArray[np.int32]) -> None:
        """Dense task indices for every pid the chunk names (the walk looks them up).

        Idle tasks of new CPUs first, then the new pids of the pid column, of the
        switches' other_pid and of the actor column, each ascending (members are
        registered in order of their first row, whatever this order; the order
        of the per-domain uncertain times follows it).
        """
        if len(ev) == 0:
            return
        cpu, pid, other, act, top = _schedwalk.bounds(ev.cpu, ev.kind, ev.pid, ev.other_pid,
                                                      actor)
        _check_range(self.path, "cpu", cpu, MAX_CPUS)
        for bounds in (pid, other, act):
            _check_range(self.path, "pid", bounds, PID_LIMIT)
        self._grow_cpus(cpu[1] + 1)
        if top > self._pid_table.shape[0]:
            table = np.full(max(top, 2 * self._pid_table.shape[0]), -1, np.int32)
            table[: self._pid_table.shape[0]] = self._pid_table
            self._pid_table = table
        table = self._pid_table
        for column in _schedwalk.new_pids(ev.kind, (ev.pid, ev.other_pid, actor), table):
            for new in column:
                table[new] = self._task(new)

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
        self._t_state = grown(self._t_state, UNKNOWN)
        self._t_grouped = grown(self._t_grouped, 0)
        self._t_exiting = grown(self._t_exiting, 0)
        self._t_wakeup = grown(self._t_wakeup, _NO_TIME)
        self._t_deferred = grown(self._t_deferred, -1)
        self._t_last_event = grown(self._t_last_event, _NO_TIME)
        self._t_span_from = grown(self._t_span_from, _NO_TIME)
        uncertain = np.zeros((n, len(SPAN_CAUSES)), np.int64)
        uncertain[: self._t_uncertain.shape[0]] = self._t_uncertain
        self._t_uncertain = uncertain
        self._t_member = grown(self._t_member, -1)

    def _grow_cpus(self, n: int) -> None:
        old = self._c_curr.shape[0]
        if n <= old:
            return
        self._c_curr = np.concatenate([self._c_curr, np.full(n - old, -1, np.int64)])
        self._c_last = np.concatenate([self._c_last, np.full(n - old, _NO_TIME, np.int64)])
        self._c_idle = np.concatenate([self._c_idle, np.full(n - old, -1, np.int64)])
        self._c_seen = np.concatenate([self._c_seen, np.zeros(n - old, np.uint8)])
        for cpu in range(old, n):
            self._c_idle[cpu] = self._task(-1 - cpu)

    def _register_first_rows(self, tasks: npt.NDArray[np.int32]) -> None:
        """Register the members of tasks that had their first row, in order of that row."""
        for task in tasks.tolist():
            self._t_member[task] = self._member_of(self._keys[task])

    # ---- output ----------------------------------------------------------------

    def _split_and_emit(self, rows: _Rows, chunk_start: int) -> EventBatch:
        """Hand on the rows before this chunk; hold back the rest.

        Rows from the chunk's first event on are held until the next chunk, so
        a span the next chunk reveals can still begin among them; rows from an
        open span end on are held for at most ``MAX_HELD_CHUNKS`` chunks.
        """
        open_rows = self._t_deferred[self._t_deferred >= 0]
        self._held_chunks = self._held_chunks + 1 if open_rows.size else 0
        cut = chunk_start
        if open_rows.size and self._held_chunks <= MAX_HELD_CHUNKS:
            cut = min(cut, int(rows.time[open_rows].min()))
        else:
            self._give_up_open(rows)
        batch, kept = self._emit_rows(rows, cut)
        self._carry = rows.head(kept)
        return batch

    def _append_carried(self, rows: _Rows) -> None:
        """Add rows after the carried ones (in the buffer they are first in, if it has room)."""
        n = len(self._carry)
        buffer = self._buffer
        if buffer is not None and len(buffer) >= n + len(rows):
            buffer.head(n + len(rows)).copy_in(rows, at=n)
            self._carry = buffer.head(n + len(rows))
            return
        self._carry = _Rows.concat([self._carry, rows])
        self._buffer = None

    def _rows_for(self, need: int) -> _Rows:
        """A rows buffer with room for ``need`` rows, the carried rows first.

        The last chunk's buffer already holds them first (``_emit_rows`` moves
        them there): it is used again while it is large enough, so the rows
        held back over several chunks are not copied for each.
        """
        if self._buffer is not None and len(self._buffer) >= need:
            return self._buffer
        # room for the carried rows to grow: only the rows written take memory
        out = _Rows.alloc(2 * need)
        out.copy_in(self._carry)
        self._buffer = out
        return out

    def _give_up_open(self, rows: _Rows) -> None:
        """Open span ends no later event decided: the spans go on until the task's next event."""
        tasks = np.flatnonzero(self._t_deferred >= 0)
        if tasks.size == 0:
            return
        ends = self._t_deferred[tasks]
        rows.new[ends] = SPAN
        self._t_state[tasks] = SPAN
        self._t_span_from[tasks] = rows.time[ends]
        self._t_deferred[tasks] = -1
        self._g[_G_OPEN] = 0
        self._held_chunks = 0
        self._count("chain_repairs_unproven", int(tasks.size), None)

    def _close_spans(self, t: int) -> None:
        """Count spans still open at ``t`` (a loss window or the trace end) up to ``t``."""
        open_ = np.flatnonzero((self._t_span_from != _NO_TIME) & (self._t_grouped > 0))
        gap = np.maximum(t - self._t_span_from[open_], 0)
        self._t_uncertain[open_, 0] += gap
        self._t_span_from[:] = _NO_TIME

    def _record_uncertain(self) -> None:
        """Per domain, the ns of undecidable member time by cause."""
        found: dict[str, dict[str, int]] = {}
        tasks = np.flatnonzero((self._t_uncertain.sum(axis=1) > 0) & (self._t_member >= 0))
        for task in tasks.tolist():
            domain = self.registry.members[int(self._t_member[task])].domain
            causes = found.setdefault(self.registry.domains[domain].key, {})
            for cause, ns in zip(SPAN_CAUSES, self._t_uncertain[task].tolist(), strict=True):
                if ns:
                    causes[cause] = causes.get(cause, 0) + ns
        self.info.uncertain_ticks.clear()  # a second pass over the same input finds the same
        self.info.uncertain_ticks.update(found)

    def _emit_rows(self, rows: _Rows, cut: int | None) -> tuple[EventBatch, int]:
        """Hand on the rows before ``cut`` (all for None), in time order and no earlier than
        rows already handed on; the others move to the front of ``rows``.  Returns the
        batch and the number of rows kept."""
        n = len(rows)
        if n == 0:
            return EventBatch.empty(), 0
        floor = int(self._g[_G_FLOOR])
        batch = EventBatch(np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.int8),
                           np.empty(n, np.int8))
        columns = (batch.time, batch.member, batch.old_state, batch.new_state)
        n_out, kept = _schedwalk.split(rows.columns(), n, 0 if cut is None else cut,
                                       cut is None, floor, self._t_member, self._t_deferred,
                                       columns)
        for column in columns:
            column.resize(n_out, refcheck=False)  # owned arrays: a replay keeps them as they are
        if n_out:
            self._g[_G_FLOOR] = int(batch.time[-1])
        return batch, kept

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

    def copy_in(self, other: _Rows, at: int = 0) -> None:
        end = at + len(other)
        self.time[at:end], self.task[at:end], self.old[at:end], self.new[at:end] = \
            other.time, other.task, other.old, other.new

    def columns(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.time, self.task, self.old, self.new)

    def head(self, n: int) -> _Rows:
        return _Rows(self.time[:n], self.task[:n], self.old[:n], self.new[:n])


def _check_range(path: str, what: str, bounds: tuple[int, int], limit: int) -> None:
    """Values a damaged file may carry must not size arrays: refuse them.

    ``bounds``: the column's (min, max).
    """
    low, high = bounds
    if low < -1 or high >= limit:
        bad = high if high >= limit else low
        raise InputError(path, f"{what} {bad} out of range (damaged trace?)")


Item = SchedEvents | LostEvents


class Converter(Protocol):
    """What :func:`convert_stream` drives: a streaming sched converter."""

    def feed(self, events: SchedEvents) -> EventBatch: ...

    def lost(self, loss: LostEvents) -> None: ...

    def finish(self) -> EventBatch: ...

def sched_batches(path: str, items: Iterable[Item], names: TaskNames, registry: Registry,
                  info: SourceInfo, options: ReadOptions, n_cpus: int | None = None,
                  active: set[int] | None = None, filtered: bool = False
                  ) -> Iterator[EventBatch]:
    """Convert a reader's stream of event chunks and losses into member batches."""
    converter = SchedConverter(path, registry, info, names, options, n_cpus, active, filtered)
    return convert_stream(converter, items)


def convert_stream(converter: Converter, items: Iterable[Item]) -> Iterator[EventBatch]:
    """Feed ``items`` to ``converter``; yields its non-empty batches, the last from ``finish``."""
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
