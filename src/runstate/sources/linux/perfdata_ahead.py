"""Reading a perf.data file ahead of its conversion, on the second core.

A file with more events than the reader keeps in memory is walked again for
each conversion (:mod:`.perfdata`).  The walk (``Scanner.read``, in C, which
lets go of the GIL) and the conversion take about as long as each other, so a
thread walks on while the caller converts: :func:`read_ahead` yields the
chunks and losses :class:`~.perfdata_order.EventStream` would, in the same
order and with the same rows, from a few buffers that take turns (a buffer
comes back for reuse when the next item is asked for; fresh memory costs a
page fault a page).  An error the walk meets is raised where the stream would
have raised it: after the items before it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from runstate.sources.linux import _perfscan
from runstate.sources.linux.perfdata_order import alloc_columns, column_events
from runstate.sources.linux.sched import LostEvents
from runstate.sources.linux.schedevents import SchedEvents

#: buffers in turn: one converted, one filled, one waiting between them
BUFFERS = 3

Columns = list[npt.NDArray[np.generic]]


class _Filled:
    """A buffer with ``rows`` events of one chunk, and the loss read after them.  (A plain
    class: a dataclass costs a millisecond to define, on the way to a report.)"""

    __slots__ = ("cols", "rows", "loss", "end")

    def __init__(self, cols: Columns, rows: int, loss: LostEvents | None, end: bool) -> None:
        self.cols = cols
        self.rows = rows
        self.loss = loss
        self.end = end


def read_ahead(scanner: _perfscan.Scanner, chunk_rows: int,
               on_error: Callable[[tuple[int, int, int, int]], Exception]
               ) -> Iterator[SchedEvents | LostEvents]:
    """The scanner's chunks and losses, read by a thread of its own one chunk ahead."""
    rows = max(1, chunk_rows)
    free: queue.Queue[Columns | None] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(alloc_columns(2 * rows + 1024))
    ready: queue.Queue[_Filled | BaseException] = queue.Queue()
    walker = threading.Thread(target=_walk, args=(scanner, rows, on_error, free, ready),
                              name="perf.data read-ahead", daemon=True)
    walker.start()
    held: Columns | None = None
    try:
        while True:
            got = ready.get()
            if held is not None:
                free.put(held)  # the caller is done with the last chunk
                held = None
            if isinstance(got, BaseException):
                raise got
            if got.rows:
                held = got.cols
                yield column_events(got.cols, 0, got.rows)
            else:
                free.put(got.cols)
            if got.loss is not None:
                yield got.loss
            if got.end:
                return
    finally:
        free.put(None)  # stops a walk the caller left early
        walker.join()


def _walk(scanner: _perfscan.Scanner, rows: int,
          on_error: Callable[[tuple[int, int, int, int]], Exception],
          free: queue.Queue[Columns | None], ready: queue.Queue[_Filled | BaseException]
          ) -> None:
    """Fill free buffers with one chunk each until the data ends, an error, or a stop."""
    try:
        while True:
            cols = free.get()
            if cols is None:
                return
            item = _fill(scanner, cols, rows, on_error)
            ready.put(item)
            if item.end:
                return
    except BaseException as err:  # handed to the caller, raised there
        ready.put(err)


def _fill(scanner: _perfscan.Scanner, cols: Columns, rows: int,
          on_error: Callable[[tuple[int, int, int, int]], Exception]) -> _Filled:
    """One chunk into ``cols`` (a larger buffer if it does not fit), as EventStream ends
    its chunks: at a round's end past ``rows`` events, before a loss, at the end."""
    filled = 0
    while True:
        n, why = scanner.read(tuple(c[filled:] for c in cols), rows)
        filled += n
        if why == _perfscan.STOP_ERROR:
            raise on_error(scanner.status()["error"])
        if why != _perfscan.STOP_FULL:
            break
        grown = alloc_columns(2 * len(cols[0]))
        for new, old in zip(grown, cols, strict=True):
            new[:filled] = old[:filled]
        cols = grown
    loss = LostEvents(*scanner.take_loss()) if why == _perfscan.STOP_LOSS else None
    return _Filled(cols, filled, loss, why == _perfscan.STOP_END)


