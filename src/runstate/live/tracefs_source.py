"""The ``tracefs`` live source: a private instance decoded as it fills.

Pages are read from the running instance every ``POLL_SECONDS`` by a
background thread (so a busy host does not overrun the buffer between two
snapshots), decoded by :class:`~runstate.live.stream.LiveSchedStream` and fed
through the recording's converter (switch-chain check and repair) into an
:class:`~runstate.engine.core.Engine`.  Events the kernel dropped become loss
windows, hence ``lost`` time.  With a pid filter the instance follows forks
(``event-fork``) and so does the grouping here.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from runstate.engine.core import Engine
from runstate.engine.results import RunResult
from runstate.errors import EnvironmentProblem
from runstate.live.engine_view import live_domain, member_label
from runstate.live.snapshot import LiveSnapshot
from runstate.live.stream import LiveSchedStream
from runstate.live.tasks import TaskCatalog, cpu_count
from runstate.live.tracefs import TraceInstance, find_tracefs
from runstate.model.registry import Registry
from runstate.model.states import MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.grouping import Assignment
from runstate.sources.linux.sched import LostEvents, SchedConverter
from runstate.sources.linux.schedevents import SchedEvents, SchedKind

POLL_SECONDS = 0.1
BUFFER_KB_ALL = 8192
BUFFER_KB_FILTERED = 2048
#: /proc states that mean "not running and not waiting for a CPU"
_SLEEPING = frozenset("SDTtIP")


class _LiveGrouping:
    """The catalog's grouping, restricted (with a pid filter) to followed tasks and their forks."""

    def __init__(self, catalog: TaskCatalog, keep: set[int] | None) -> None:
        self.catalog = catalog
        self.keep = keep
        self.mode = catalog.grouping.mode

    @property
    def expected_members(self) -> dict[str, int]:
        return {}

    def assign(self, tid: int) -> Assignment | None:
        if tid <= 0 or (self.keep is not None and tid not in self.keep):
            return None
        return self.catalog.describe(tid)


class TracefsSource:
    """An engine fed live from a tracefs instance."""

    name = "tracefs"

    def __init__(self, catalog: TaskCatalog) -> None:
        if os.geteuid() != 0:
            raise EnvironmentProblem("tracefs needs root")
        self.catalog = catalog
        self._tracefs = find_tracefs()
        self._instance = TraceInstance.create(self._tracefs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        followed = self.catalog.initial
        keep = {f.tid for f in followed} if self.catalog.filtered else None
        self._instance.configure(
            pids=None if keep is None else sorted(keep) or [0],
            buffer_kb=BUFFER_KB_ALL if keep is None else BUFFER_KB_FILTERED)
        self.registry = Registry()
        self.info = SourceInfo(format="tracefs-live", path=self._instance.name, clock="mono")
        options = ReadOptions(group=self.catalog.select.group)
        self._converter = SchedConverter(self._instance.name, self.registry, self.info,
                                         self.catalog.names, options, n_cpus=cpu_count(),
                                         filtered=keep is not None)
        self._grouping = _LiveGrouping(self.catalog, keep)
        self._converter.grouping = self._grouping  # type: ignore[assignment]
        initial = {}
        for f in followed:
            index = self.registry.member(f.assignment.domain_key, f.assignment.member_key,
                                         f.assignment.member_name)
            self.registry.domain(f.assignment.domain_key, f.assignment.domain_name)
            if self.catalog.names.start_state.get(f.tid, "R") in _SLEEPING:
                initial[index] = MemberState.BLOCKED
        self.started_ns = time.monotonic_ns()
        # the engine's ticks are the instance's CLOCK_MONOTONIC ns: its figures need no conversion
        self._engine = Engine(self.registry, start_ticks=self.started_ns, initial=initial)
        self._instance.start()
        self._stream = LiveSchedStream(self._instance, self.started_ns)
        self._losses_fed = 0
        self._thread = threading.Thread(target=self._poll_loop, name="runstate-tracefs",
                                        daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            with self._lock:
                self._poll()

    def _poll(self) -> None:
        events = self._stream.poll()
        for loss in self._stream.losses[self._losses_fed:]:
            self._converter.lost(LostEvents(loss.cpu, loss.start_ns, loss.end_ns,
                                            loss.count if loss.count >= 0 else None))
        self._losses_fed = len(self._stream.losses)
        if len(events):
            self._follow_forks(events)
            self.catalog.names.comm.update(
                {t: c for t, c in self._stream.comms.items() if t not in self.catalog.names.comm})
            batch = self._converter.feed(events)
            if len(batch):
                self._engine.feed(batch)

    def _follow_forks(self, events: SchedEvents) -> None:
        keep = self._grouping.keep
        if keep is None:
            return
        forks = np.flatnonzero(events.kind == int(SchedKind.FORK))
        for child, parent in zip(events.pid[forks].tolist(),
                                 events.other_pid[forks].tolist(), strict=True):
            if parent in keep:
                keep.add(child)

    def refresh(self) -> None:
        """New processes are not added to a running pid filter: forks are followed."""

    def snapshot(self, with_members: bool = True) -> LiveSnapshot:
        with self._lock:
            self._poll()
            result = self._engine.snapshot(self._safe_time())
            states = self._engine._s.mstate.copy()  # the members' states now

        def state_of(domain_key: str, member_key: str) -> str:
            index = self.registry.find_member(domain_key, member_key)
            return "lost" if index is None or index >= len(states) else \
                member_label(int(states[index]))

        domains = tuple(live_domain(d, state_of, with_members) for d in result.domains
                        if d.lifetime_ticks > 0 or d.current_state is not None)
        lost = sum(self._instance.stats(cpu).lost for cpu in self._instance.cpus())
        return LiveSnapshot(time_ns=result.end_ticks, started_ns=self.started_ns,
                            source=self.name, n_cpus=cpu_count(), lost_events=lost,
                            domains=domains, notes=_notes(result))

    def _safe_time(self) -> int:
        """The latest time no later row can precede: the stream's watermark, or
        the first row the converter still holds back (an unresolved switch)."""
        last = self._engine.last_time_ticks or self.started_ns
        bound = self._stream.watermark_ns or last
        held = getattr(self._converter, "_carry", None)
        held_time = getattr(held, "time", None)
        if held_time is not None and len(held_time):
            bound = min(bound, int(held_time.min()))
        return max(last, bound)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self._instance.close()
        finally:
            self._tracefs.release()


def _notes(result: RunResult) -> tuple[str, ...]:
    repairs = result.anomalies.get("chain_repairs", 0)
    return (f"{repairs} switch-chain repairs",) if repairs else ()
