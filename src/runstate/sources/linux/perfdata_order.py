"""Time order of perf.data samples under perf's FINISHED_ROUND rule, with losses placed.

Records are time-ordered only within ``FINISHED_ROUND`` windows: samples are
buffered and released up to the largest time seen before the previous round
ended (perf's own rule), so memory stays bounded by about two rounds.  A LOST
record's window begins after its CPU's last released event.

The same rule says how far a cut-off file is complete when its data stops
(``head -c``, a killed writer): events up to the time released at the last
FINISHED_ROUND are all there.  So are those up to the earliest of the CPUs'
last events in the file once every CPU has appeared: each CPU's buffer is
written in time order, so the file holds a prefix of every CPU's stream.
Past the later of those two times some CPU's events may be missing;
``flush_complete`` releases only what precedes it, so nothing after it is
accounted as if it were known.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from runstate.sources.linux.sched import LostEvents
from runstate.sources.linux.schedevents import SchedEvents


def slice_events(ev: SchedEvents, start: int, stop: int) -> SchedEvents:
    """Rows ``start:stop`` of ``ev`` (views, not copies)."""
    return SchedEvents(ev.time[start:stop], ev.cpu[start:stop], ev.kind[start:stop],
                       ev.pid[start:stop], ev.other_pid[start:stop], ev.prev_state[start:stop],
                       None if ev.actor is None else ev.actor[start:stop])


class RoundOrder:
    """Releases samples in time order under perf's FINISHED_ROUND guarantee."""

    def __init__(self, n_cpus: int | None = None) -> None:
        #: CPUs with a buffer of their own, if known: the per-CPU bound needs all of them
        self._n_cpus = n_cpus
        self._held: list[SchedEvents] = []
        self._losses: list[LostEvents] = []
        self._limit: int | None = None     # max time seen when the previous round ended
        self._last_on_cpu: dict[int, int] = {}
        self._max_time: int | None = None
        #: time up to which every CPU's events have been released (None: no round yet)
        self._released_until: int | None = None
        #: per CPU, the time of its last event so far in file order
        self._cpu_last: dict[int, int] = {}
        #: events and losses left out by :meth:`flush_complete`
        self.dropped = 0

    def add(self, events: SchedEvents, pos: npt.NDArray[np.int64],
            rounds: npt.NDArray[np.int64], losses: list[LostEvents]
            ) -> Iterator[SchedEvents | LostEvents]:
        """Take one block's samples (file positions ``pos``) and round boundaries."""
        self._losses.extend(losses)
        by_pos = np.argsort(pos, kind="stable")
        events, pos = events.take(by_pos), pos[by_pos]
        self._note_file_order(events)
        cuts = np.searchsorted(pos, rounds).tolist()
        start = 0
        for cut in cuts:
            self._hold(slice_events(events, start, cut))
            start = cut
            limit, self._limit = self._limit, self._max_time
            if limit is not None:
                self._released_until = limit
                yield from self._release(limit)
        self._hold(slice_events(events, start, len(events)))

    def _note_file_order(self, events: SchedEvents) -> None:
        n = len(events)
        if n:
            cpus, from_end = np.unique(events.cpu[::-1], return_index=True)
            last = events.time[n - 1 - from_end]
            self._cpu_last.update(zip(cpus.tolist(), last.tolist(), strict=True))

    @property
    def complete_until(self) -> int | None:
        """The time up to which the events read so far are known to be all there."""
        bounds = [] if self._released_until is None else [self._released_until]
        if self._n_cpus is not None and len(self._cpu_last) >= self._n_cpus:
            bounds.append(min(self._cpu_last.values()))
        return max(bounds) if bounds else None

    def _hold(self, events: SchedEvents) -> None:
        if len(events):
            self._held.append(events)
            t = int(events.time.max())
            self._max_time = t if self._max_time is None else max(self._max_time, t)

    def _release(self, limit: int | None) -> Iterator[SchedEvents | LostEvents]:
        if not self._held and not self._losses:
            return
        allev = self._held[0] if len(self._held) == 1 else SchedEvents.concat(self._held)
        if len(allev) > 1 and bool(np.any(allev.time[1:] < allev.time[:-1])):
            allev = allev.take(np.argsort(allev.time, kind="stable"))
        n = len(allev)
        cut = n if limit is None else int(np.searchsorted(allev.time, limit, "right"))
        self._held = [slice_events(allev, cut, n)] if cut < n else []
        due = [x for x in self._losses if limit is None or x.end_ns <= limit]
        self._losses = [x for x in self._losses if not (limit is None or x.end_ns <= limit)]
        start = 0
        for loss in sorted(due, key=lambda x: x.end_ns):
            # the record is written with the first event that made it after the loss
            at = int(np.searchsorted(allev.time[:cut], loss.end_ns, "left"))
            if at > start:
                yield self._note_cpus(slice_events(allev, start, at))
            begin = self._last_on_cpu.get(loss.cpu, loss.end_ns)
            yield LostEvents(loss.cpu, min(begin, loss.end_ns), loss.end_ns, loss.count)
            start = at
        if start < cut:
            yield self._note_cpus(slice_events(allev, start, cut))

    def _note_cpus(self, ev: SchedEvents) -> SchedEvents:
        """Remember each CPU's latest event: a loss there began after it."""
        for cpu in np.unique(ev.cpu).tolist():
            self._last_on_cpu[cpu] = int(ev.time[np.flatnonzero(ev.cpu == cpu)[-1]])
        return ev

    def flush_all(self) -> Iterator[SchedEvents | LostEvents]:
        yield from self._release(None)

    def flush_complete(self) -> Iterator[SchedEvents | LostEvents]:
        """At the end of a cut-off file: release what is known complete, drop the rest."""
        until = self.complete_until
        if until is not None:
            yield from self._release(until)
        self.dropped = sum(len(e) for e in self._held) + len(self._losses)
        self._held, self._losses = [], []
