"""perf.data events in time order: chunks and losses from the C pass, losses placed exactly.

Records are time-ordered only within ``FINISHED_ROUND`` windows: samples are
held and released up to the largest time seen before the previous round ended
(perf's own rule), so memory stays bounded by about two rounds; ties keep file
order.  The C scanner (``_perfscan``) applies the rule; :class:`EventStream`
turns what it releases into the chunks the sched converter takes: a chunk ends
at the first round end after ``chunk_rows`` events, or before a loss.  While
streaming, a LOST record's window begins after its CPU's last released event.

The same rule says how far a cut-off file is complete when its data stops
(``head -c``, a killed writer): events up to the time released at the last
FINISHED_ROUND are all there.  So are those up to the earliest of the CPUs'
last events in the file once every CPU has appeared: each CPU's buffer is
written in time order, so the file holds a prefix of every CPU's stream.
Past the later of those two times some CPU's events may be missing; the
scanner releases only what precedes it, so nothing after it is accounted as
if it were known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from runstate.sources.linux import _perfscan
from runstate.sources.linux.sched import LostEvents
from runstate.sources.linux.schedevents import SchedEvents

#: the event columns the scanner fills, in its order
COLUMNS = (np.int64, np.int32, np.int8, np.int32, np.int32, np.int64, np.int32)


def slice_events(ev: SchedEvents, start: int, stop: int) -> SchedEvents:
    """Rows ``start:stop`` of ``ev`` (views, not copies)."""
    return SchedEvents(ev.time[start:stop], ev.cpu[start:stop], ev.kind[start:stop],
                       ev.pid[start:stop], ev.other_pid[start:stop], ev.prev_state[start:stop],
                       None if ev.actor is None else ev.actor[start:stop])


def alloc_columns(n: int) -> list[npt.NDArray[np.generic]]:
    """Room for ``n`` events, one array per column."""
    return [np.empty(n, dtype) for dtype in COLUMNS]


def column_events(cols: list[npt.NDArray[np.generic]], start: int, stop: int) -> SchedEvents:
    """Rows ``start:stop`` of the columns ``cols`` as events (views)."""
    return SchedEvents(*(c[start:stop] for c in cols))  # type: ignore[arg-type]


class EventStream:
    """The scanner's released events as chunks and losses, in order, each chunk in arrays
    of its own (:mod:`.perfdata_ahead` reads ahead into buffers that take turns).

    Args:
        scanner: a fresh :class:`~runstate.sources.linux._perfscan.Scanner`.
        chunk_rows: a chunk ends at the first round end after this many events.
        capacity: events the first buffer holds; each buffer holds one chunk or
            more and grows as needed.
        on_error: turns the scanner's error status into the exception raised.
    """

    def __init__(self, scanner: _perfscan.Scanner, chunk_rows: int, capacity: int,
                 on_error: Callable[[tuple[int, int, int, int]], Exception]) -> None:
        self.scanner = scanner
        self._chunk_rows = max(1, chunk_rows)
        self._capacity = max(1, capacity)
        self._on_error = on_error

    def __iter__(self) -> Iterator[SchedEvents | LostEvents]:
        cols = alloc_columns(self._capacity)
        start = filled = 0
        scanner = self.scanner
        while True:
            n, why = scanner.read(tuple(c[filled:] for c in cols), self._chunk_rows)
            filled += n
            if why == _perfscan.STOP_ERROR:
                raise self._on_error(scanner.status()["error"])
            if why == _perfscan.STOP_FULL:
                cols, start, filled = self._room(cols, start, filled)
                continue
            if filled > start:
                yield column_events(cols, start, filled)
            start = filled
            if why == _perfscan.STOP_LOSS:
                yield LostEvents(*scanner.take_loss())
            if why == _perfscan.STOP_END:
                return
            if filled > self._capacity // 2:
                cols = alloc_columns(len(cols[0]))
                start = filled = 0

    def _room(self, cols: list[npt.NDArray[np.generic]], start: int, filled: int
              ) -> tuple[list[npt.NDArray[np.generic]], int, int]:
        """Room for more events: a larger buffer, the chunk so far moved to its start."""
        pending = filled - start
        fresh = alloc_columns(max(self._capacity, 2 * pending))
        for new, old in zip(fresh, cols, strict=True):
            new[:pending] = old[start:filled]
        return fresh, 0, pending


def stored_items(scanner: _perfscan.Scanner, count: int
                 ) -> tuple[list[SchedEvents | LostEvents], SchedEvents]:
    """The chunks and losses a names pass (``Scanner.start``) kept, and all its events in
    one table: numpy views of the columns the pass wrote (no copy)."""
    cols = [np.frombuffer(c, dtype, count) for c, dtype in zip(scanner.columns(), COLUMNS,
                                                                strict=True)]
    items: list[SchedEvents | LostEvents] = []
    for item in scanner.items():
        if len(item) == 2:
            items.append(column_events(cols, item[0], item[1]))
        else:
            items.append(LostEvents(*item))
    return items, column_events(cols, 0, count)


def place_losses(items: list[SchedEvents | LostEvents], allev: SchedEvents, step: int
                 ) -> list[SchedEvents | LostEvents]:
    """Put each loss where it began: right after the last event its CPU kept.

    While streaming, a LOST record is met only with the first event after
    the loss; with the whole stream in memory the window can start exactly.
    ``allev`` holds the events of ``items`` in one table; events between
    losses come in chunks of ``step``.
    """
    losses = [i for i in items if isinstance(i, LostEvents)]
    if not losses:
        return items
    if bool(np.any(allev.time[1:] < allev.time[:-1])):
        placed = _begun_by_cpu(allev, losses)
    else:
        placed = [LostEvents(x.cpu, _last_before(allev, x.cpu, x.end_ns), x.end_ns, x.count)
                  for x in losses]
        placed.sort(key=lambda x: x.cpu)  # the order equal beginnings keep: by CPU
    placed.sort(key=lambda x: x.begin_ns)
    # one search a loss: numpy's search for many values assumes a time-ordered table
    cuts = [int(np.searchsorted(allev.time, x.begin_ns, "right")) for x in placed]
    out: list[SchedEvents | LostEvents] = []
    start = 0
    for loss, at in zip(placed, cuts, strict=True):
        out.extend(slice_events(allev, a, min(a + step, at)) for a in range(start, at, step))
        out.append(loss)
        start = max(start, at)
    n = len(allev)
    out.extend(slice_events(allev, a, min(a + step, n)) for a in range(start, n, step))
    return out


def _last_before(allev: SchedEvents, cpu: int, end: int) -> int:
    """Time of the last event on ``cpu`` before ``end`` in a time-ordered table, else ``end``.

    The events before ``end`` are a prefix there: it is searched from its end,
    in widening steps, for the CPU's last one (usually a few events back).
    """
    stop = int(np.searchsorted(allev.time, end, "left"))
    step = 1024
    while stop > 0:
        start = max(0, stop - step)
        hits = np.flatnonzero(allev.cpu[start:stop] == cpu)
        if hits.size:
            return int(allev.time[start + int(hits[-1])])
        stop, step = start, 2 * step
    return end


def _begun_by_cpu(allev: SchedEvents, losses: list[LostEvents]) -> list[LostEvents]:
    """Each loss from its CPU's last event before it, each CPU's events taken in table
    order (a table not in time order: ``_last_before`` needs one that is)."""
    placed: list[LostEvents] = []
    for cpu in sorted({x.cpu for x in losses}):
        times = allev.time[allev.cpu == cpu]
        for loss in (x for x in losses if x.cpu == cpu):
            at = int(np.searchsorted(times, loss.end_ns, "left"))
            begin = int(times[at - 1]) if at > 0 else loss.end_ns
            placed.append(LostEvents(cpu, begin, loss.end_ns, loss.count))
    return placed
