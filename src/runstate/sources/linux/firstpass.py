"""Exact mode's first pass for a perf.data file: one conversion, kept for the second read.

The pipeline reads a re-readable source twice (``engine.resolve``): first to
learn each member's state before its first row in every epoch, then to run
the engine from those states.  For perf.data the conversion is most of the
cost of a read, so the reader offers the pipeline a first pass of its own
(``first_pass()``): it converts once, learns the states in C as the rows go
by (:class:`FirstRows`, the Resolver's rule), and keeps the batches and what
the conversion told the source's info (:class:`~.keptread.KeptRead`) for the
second read, which hands them out again.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runstate.model.events import EventBatch
from runstate.sources.linux import _schedwalk


class FirstRows:
    """Per epoch, the old state of each member's first row, and the first and last times.

    Epoch 0 starts at the trace's start, epoch k at the end of the k-th lost-data
    window, exactly as :class:`runstate.engine.resolve.Resolver` counts them.
    """

    def __init__(self) -> None:
        self._epochs: list[npt.NDArray[np.int8]] = [_table(64)]
        self._depth = 0
        self.first: int | None = None
        self.last: int | None = None

    def feed(self, batch: EventBatch, n_members: int) -> None:
        """Take one batch; its members are below ``n_members``."""
        n = len(batch)
        if n == 0:
            return
        if self.first is None:
            self.first = int(batch.time[0])
        self.last = int(batch.time[-1])
        pos = 0
        while pos < n:
            table = self._room(n_members)
            pos, self._depth, epoch = _schedwalk.first_rows(
                batch.member, batch.old_state, batch.new_state, pos, table, self._depth)
            if epoch:
                self._epochs.append(_table(max(64, n_members)))

    def _room(self, n_members: int) -> npt.NDArray[np.int8]:
        table = self._epochs[-1]
        if table.shape[0] < n_members:
            grown = _table(max(n_members, 2 * table.shape[0]))
            grown[: table.shape[0]] = table
            self._epochs[-1] = table = grown
        return table

    def states(self, n_members: int) -> npt.NDArray[np.int8]:
        """``states[e, m]``: member m's first old state in epoch e, or -1."""
        out = np.full((len(self._epochs), n_members), -1, np.int8)
        for e, table in enumerate(self._epochs):
            k = min(n_members, table.shape[0])
            out[e, :k] = table[:k]
        return out


def _table(n: int) -> npt.NDArray[np.int8]:
    return np.full(n, -1, np.int8)
