"""The ``tracefs`` live source: a private instance decoded as it fills.

Pages are read from the running instance by a background thread, as often as
the rate the buffers fill at asks for (so a busy host does not overrun them
between two snapshots, and a quiet one is not woken for nothing), decoded by
:class:`~runstate.live.stream.LiveSchedStream` and fed through the recording's
converter (switch-chain check and repair).  Events the kernel dropped become
loss windows, hence ``lost`` time.

The decoded events lag the clock by a varying fraction of a second, so the
converter's rows wait in a :class:`~runstate.live.row_queue.RowQueue` and a
snapshot asked for a moment waits until the events have passed it, then takes
exactly the rows up to it: ``top --batch`` records are whole intervals.

With a pid filter the instance follows forks (``event-fork``) and so does the
grouping here; the threads of a ``--vm`` that starts later join the filter as
soon as a refresh or one of their events shows them.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import numpy.typing as npt

from runstate.engine.core import Engine
from runstate.errors import EnvironmentProblem
from runstate.live.engine_view import EngineView
from runstate.live.row_queue import RowQueue
from runstate.live.snapshot import LiveSnapshot
from runstate.live.stream import IN_FLIGHT_NS, LiveSchedStream
from runstate.live.tasks import Followed, TaskCatalog, cpu_count
from runstate.live.tracefs import TraceInstance, find_tracefs
from runstate.live.tracefs_follow import SLEEPING, FollowedGrouping, asleep
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import LostEvents, SchedConverter
from runstate.sources.linux.schedevents import SchedEvents, SchedKind

#: the pages are read by a background thread between these pauses: often enough that
#: a CPU fills at most FILL_SHARE of its buffer meanwhile, at the rate the last polls
#: saw (a quiet host's poller wakes twice a second, a busy one's ten times; the longest
#: pause bounds what a burst after a quiet spell can fill before it is seen)
POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 0.5
FILL_SHARE = 0.25
BUFFER_KB_ALL = 8192
BUFFER_KB_FILTERED = 2048
#: rows wait this long for a snapshot placed in the past before the engine takes them
KEEP_NS = 2_000_000_000
#: a snapshot waits at most this long for the events to pass its moment
CATCH_UP_NS = 1_500_000_000
CATCH_UP_STEP_S = 0.02


def poll_pause(buffer_pages: float, pages_per_s: float) -> float:
    """Seconds until the next background poll: the time a CPU filling ``pages_per_s``
    takes to fill FILL_SHARE of its buffer, within POLL_SECONDS and MAX_POLL_SECONDS."""
    if pages_per_s <= 0:
        return MAX_POLL_SECONDS
    return min(MAX_POLL_SECONDS, max(POLL_SECONDS, FILL_SHARE * buffer_pages / pages_per_s))


def no_task_event(t_ns: int, cpu: int) -> SchedEvents:
    """A wakeup of no task (pid -1) at ``t_ns``: the converter skips it, but takes it
    as the start of a chunk, so it hands on every row before ``t_ns``."""
    return SchedEvents.from_columns([t_ns], [cpu], [int(SchedKind.WAKEUP)], [-1], [-1], [0])


class TracefsSource:
    """An engine fed live from a tracefs instance."""

    name = "tracefs"

    def __init__(self, catalog: TaskCatalog) -> None:
        if os.geteuid() != 0:
            raise EnvironmentProblem("tracefs needs root")
        self.catalog = catalog
        self._n_cpus = cpu_count()
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
        self._buffer_kb = BUFFER_KB_ALL if keep is None else BUFFER_KB_FILTERED
        self._instance.configure(pids=None if keep is None else sorted(keep) or [0],
                                 buffer_kb=self._buffer_kb)
        self.registry = Registry()
        self.info = SourceInfo(format="tracefs-live", path=self._instance.name, clock="mono")
        options = ReadOptions(group=self.catalog.select.group)
        self._converter = SchedConverter(self._instance.name, self.registry, self.info,
                                         self.catalog.names, options, n_cpus=self._n_cpus,
                                         filtered=keep is not None)
        self.started_ns = time.monotonic_ns()
        self._stream = LiveSchedStream(self._instance, self.started_ns)
        self._grouping = FollowedGrouping(self.catalog, keep, self._stream.comms)
        self._converter.grouping = self._grouping  # type: ignore[assignment]
        self._engine = Engine(self.registry, start_ticks=self.started_ns,
                              initial=self._initial_states(followed))
        self._view = EngineView(self.registry)
        #: when each member was last seen asleep in /proc
        self._sighted: dict[int, int] = {}
        self._unknown_before = 0
        self._queue = RowQueue()
        self._losses_fed = 0
        self._instance.start()
        self._thread = threading.Thread(target=self._poll_loop, name="runstate-tracefs",
                                        daemon=True)
        self._thread.start()

    def _initial_states(self, followed: list[Followed]) -> dict[int, MemberState]:
        """Members known from /proc: sleeping is blocked; running or runnable is not
        known (its domain is lost) until the member's first event."""
        initial = {}
        for f in followed:
            index = self.registry.member(f.assignment.domain_key, f.assignment.member_key,
                                         f.assignment.member_name)
            self._grouping.tids[(f.assignment.domain_key, f.assignment.member_key)] = f.tid
            self.registry.domain(f.assignment.domain_key, f.assignment.domain_name)
            sleeping = self.catalog.names.start_state.get(f.tid, "R") in SLEEPING
            initial[index] = MemberState.BLOCKED if sleeping else MemberState.UNKNOWN
        return initial

    # ---- reading ------------------------------------------------------------------

    def _poll_loop(self) -> None:
        pause = POLL_SECONDS
        while not self._stop.wait(pause):
            with self._lock:
                self._poll()
                self._feed_engine(self._safe_time() - KEEP_NS)
                pause = self._next_pause()

    def _next_pause(self) -> float:
        return poll_pause(self._buffer_kb * 1024 / self._stream.reader.page_size,
                          self._stream.pages_per_s)

    def _poll(self) -> None:
        events = self._stream.poll()
        for loss in self._stream.losses[self._losses_fed:]:
            self._converter.lost(LostEvents(loss.cpu, loss.start_ns, loss.end_ns,
                                            loss.count if loss.count >= 0 else None))
        self._losses_fed = len(self._stream.losses)
        if len(events):
            self._follow_forks(events)
            self._queue.push(self._converter.feed(events))
        self._widen_filter()

    def _follow_forks(self, events: SchedEvents) -> None:
        keep = self._grouping.keep
        if keep is None:
            return
        forks = np.flatnonzero(events.kind == int(SchedKind.FORK))
        for child, parent in zip(events.pid[forks].tolist(),
                                 events.other_pid[forks].tolist(), strict=True):
            if parent in keep:
                keep.add(child)

    def _widen_filter(self) -> None:
        """Trace the threads taken in since the last call (a VM started later)."""
        adopted, self._grouping.adopted = self._grouping.adopted, []
        if adopted:
            self._instance.add_pids(adopted)

    def _release_held_rows(self) -> None:
        """Make the converter hand on the rows it holds back for the next chunk.

        It holds the rows from its last chunk's first event on, in case the next
        chunk reveals a lost switch that began among them.  Every event before
        the stream's watermark has been decoded, so the next chunk starts after
        it: an event of no task at the watermark says so.
        """
        held = self._converter.held_back_since_ns
        watermark = self._stream.watermark_ns
        if held is None or watermark is None or watermark <= held:
            return
        mark = no_task_event(watermark, self._stream.reader.cpus[0])
        self._queue.push(self._converter.feed(mark))

    def _safe_time(self) -> int:
        """The latest moment no row still to come can precede: the stream's
        watermark, or the first row the converter still holds back."""
        bound = self._stream.watermark_ns or self.started_ns
        held = self._converter.held_back_since_ns
        return bound if held is None else min(bound, held)

    def _feed_engine(self, until_ns: int) -> None:
        rows = self._queue.take_until(until_ns, self._engine.last_time_ticks)
        if len(rows):
            self._engine.feed(rows)

    # ---- the monitor's side ---------------------------------------------------------

    def refresh(self) -> None:
        """Follow the threads of a ``--vm`` that started since the last refresh
        (forks of followed tasks are followed by the kernel already)."""
        with self._lock:
            new = self.catalog.rescan()
            if self._grouping.keep is not None and new:
                self._grouping.adopt([f.tid for f in new])
                self._widen_filter()

    def snapshot(self, with_members: bool = True, at_ns: int | None = None) -> LiveSnapshot:
        """Figures at ``at_ns`` (monotonic ns), once the events have passed it;
        without it, at the latest moment the events allow."""
        moment = self._catch_up(at_ns)
        with self._lock:
            last = self._engine.last_time_ticks or self.started_ns
            moment = max(moment, last)
            self._feed_engine(moment)
            totals = self._engine.live_totals(moment, with_members)
            self._sight_unknown(totals.member_states, moment)
            domains = self._view.domains(totals, with_members)
        lost = sum(self._instance.stats(cpu).lost for cpu in self._stream.reader.cpus)
        return LiveSnapshot(time_ns=totals.end_ticks, started_ns=self.started_ns,
                            source=self.name, n_cpus=self._n_cpus, lost_events=lost,
                            domains=domains, notes=self._notes(totals.member_states))

    def _sight_unknown(self, states: npt.NDArray[np.int8], moment: int) -> None:
        """Members the trace cannot tell the state of (after events were dropped, or
        running or runnable at the start) until their next event: one that /proc
        shows asleep now is blocked from now on (seen at a moment, not guessed).

        A member is looked at again while it is unknown at a snapshot after the
        moment it was last seen (more events may have been dropped since).
        """
        unknown = [m for m in np.flatnonzero(states == MemberState.UNKNOWN).tolist()
                   if self._sighted.get(m, moment) <= moment]
        seen = asleep(self._grouping.threads_of(self.registry, unknown))
        self._sighted.update(seen)
        if seen:
            n = len(seen)
            self._queue.add_sightings(EventBatch.from_columns(
                list(seen.values()), list(seen), [MemberState.BLOCKED] * n,
                [MemberState.BLOCKED] * n))

    def _catch_up(self, at_ns: int | None) -> int:
        """Poll until the events have passed ``at_ns`` (or for CATCH_UP_NS at most);
        the moment a snapshot can be taken at."""
        give_up = time.monotonic_ns() + CATCH_UP_NS
        if at_ns is not None:
            # events stamped before at_ns may be in flight until IN_FLIGHT_NS after it
            early = at_ns + IN_FLIGHT_NS - time.monotonic_ns()
            if early > 0:
                time.sleep(early / 1e9)
        while True:
            with self._lock:
                self._poll()
                if at_ns is None or (self._stream.watermark_ns or 0) >= at_ns:
                    self._release_held_rows()
                safe = self._safe_time()
            if at_ns is None:
                return safe
            if safe >= at_ns:
                return at_ns
            if time.monotonic_ns() >= give_up:
                return safe
            time.sleep(CATCH_UP_STEP_S)

    def _notes(self, states: npt.NDArray[np.int8]) -> tuple[str, ...]:
        notes = []
        # members unknown now or at the last snapshot: the time between may be lost
        unknown = int(np.count_nonzero(states == MemberState.UNKNOWN))
        unknown, self._unknown_before = max(unknown, self._unknown_before), unknown
        if unknown:
            notes.append(f"{unknown} followed threads in an unknown state until their "
                         "next event (their domains are lost meanwhile)")
        repairs = self.info.anomalies.get("chain_repairs", 0)
        if repairs:
            notes.append(f"{repairs} switch-chain repairs (switches the tracer dropped: "
                         "what they leave undecided is lost)")
        if self._queue.late_rows:
            notes.append(f"{self._queue.late_rows} state changes found out after a snapshot "
                         "had passed them were placed at it")
        return tuple(notes)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self._instance.close()
        finally:
            self._tracefs.release()
