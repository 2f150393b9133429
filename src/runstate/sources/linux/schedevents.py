"""The columnar table of decoded scheduler tracepoint events, shared by all Linux readers.

perf.data, a tracefs recording and perf script / ftrace text are each decoded
into :class:`SchedEvents` chunks; ``sched`` turns them into member state
changes (per-CPU switch-chain check and repair, prev_state rules, grouping).

Columns (one row per tracepoint hit, time-sorted across CPUs):

============  =====  ============================================================
column        dtype  meaning
============  =====  ============================================================
time          int64  ns in the trace's clock
cpu           int32  CPU the event was recorded on
kind          int8   :class:`SchedKind`
pid           int32  switch: prev_pid; wakeup/wakeup_new: woken pid;
                     fork: child pid; exit: exiting pid
other_pid     int32  switch: next_pid; fork: parent pid; otherwise -1
prev_state    int64  switch: the tracepoint's raw prev_state; otherwise 0
actor         int32  the task current on ``cpu`` when the event was recorded
                     (``common_pid``; 0: the idle task), -1 where not known;
                     optional: None when the reader does not have it
============  =====  ============================================================

The actor is evidence: an event recorded on a CPU proves its actor was
running there at that moment, which bounds a switch the tracer dropped.

Thread names and thread groups travel beside the table in :class:`TaskNames`
(defined, with :class:`SchedKind`, in the numpy-free :mod:`.schedkinds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runstate.sources.linux.schedkinds import SchedKind as SchedKind
from runstate.sources.linux.schedkinds import TaskNames as TaskNames


@dataclass(frozen=True, slots=True)
class SchedEvents:
    time: npt.NDArray[np.int64]
    cpu: npt.NDArray[np.int32]
    kind: npt.NDArray[np.int8]
    pid: npt.NDArray[np.int32]
    other_pid: npt.NDArray[np.int32]
    prev_state: npt.NDArray[np.int64]
    actor: npt.NDArray[np.int32] | None = None

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @classmethod
    def from_columns(cls, time: object, cpu: object, kind: object, pid: object,
                     other_pid: object, prev_state: object, actor: object = None
                     ) -> SchedEvents:
        return cls(
            np.ascontiguousarray(time, dtype=np.int64),
            np.ascontiguousarray(cpu, dtype=np.int32),
            np.ascontiguousarray(kind, dtype=np.int8),
            np.ascontiguousarray(pid, dtype=np.int32),
            np.ascontiguousarray(other_pid, dtype=np.int32),
            np.ascontiguousarray(prev_state, dtype=np.int64),
            None if actor is None else np.ascontiguousarray(actor, dtype=np.int32),
        )

    @staticmethod
    def concat(parts: Sequence[SchedEvents]) -> SchedEvents:
        actor = None
        if any(p.actor is not None for p in parts):
            actor = np.concatenate([p.actors() for p in parts])
        def joined(name: str) -> object:
            return np.concatenate([getattr(p, name) for p in parts]) if parts else []

        return SchedEvents.from_columns(joined("time"), joined("cpu"), joined("kind"),
                                        joined("pid"), joined("other_pid"),
                                        joined("prev_state"), actor)

    def actors(self) -> npt.NDArray[np.int32]:
        """The actor column, -1 throughout where the reader did not give it."""
        if self.actor is None:
            return np.full(len(self), -1, np.int32)
        return self.actor

    def take(self, index: npt.NDArray[np.intp]) -> SchedEvents:
        return SchedEvents(self.time[index], self.cpu[index], self.kind[index],
                           self.pid[index], self.other_pid[index], self.prev_state[index],
                           None if self.actor is None else self.actor[index])
