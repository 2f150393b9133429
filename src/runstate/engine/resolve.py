"""First pass over a re-readable input: what each member was doing before its first record.

By the domain runstate rules (docs/semantics.md, "Exact mode and the first
pass"), a member's state before its first record is the old state that record
reveals, and it held since the window start (or since the end of the last
lost-data window).  A one-pass engine cannot know this until the record
arrives, so for files the pipeline reads the input twice: this resolver learns,
per epoch (epoch 0 starts at the window start, epoch k at the end of the k-th
lost-data window), the old state of every member's first record, and the
engine starts each epoch from those states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runstate.model.events import EventBatch
from runstate.model.states import LOSS_BEGIN, LOSS_END


@dataclass(frozen=True, slots=True)
class Resolution:
    """``states[e, m]``: old state of member m's first record in epoch e, or -1."""

    states: npt.NDArray[np.int8]
    first_time_ticks: int | None
    last_time_ticks: int | None


class Resolver:
    """Streams batches once and collects a :class:`Resolution`."""

    def __init__(self) -> None:
        self._epochs: list[npt.NDArray[np.int8]] = [np.full(0, -1, np.int8)]
        self._depth = 0
        self._first: int | None = None
        self._last: int | None = None

    def feed(self, batch: EventBatch) -> None:
        if len(batch) == 0:
            return
        if self._first is None:
            self._first = int(batch.time[0])
        self._last = int(batch.time[-1])
        markers = np.flatnonzero(batch.member < 0)
        start = 0
        for pos in markers.tolist():
            self._take(batch, start, pos)
            self._marker(int(batch.new_state[pos]))
            start = pos + 1
        self._take(batch, start, len(batch))

    def _marker(self, code: int) -> None:
        if code == LOSS_BEGIN:
            self._depth += 1
        elif code == LOSS_END and self._depth > 0:
            self._depth -= 1
            if self._depth == 0:
                self._epochs.append(np.full(0, -1, np.int8))

    def _take(self, batch: EventBatch, start: int, stop: int) -> None:
        if stop <= start or self._depth > 0:
            return
        members = batch.member[start:stop]
        table = self._grown(int(members.max()) + 1)
        # most rows belong to members already resolved in this epoch: sort only the rest
        pending = np.flatnonzero(table[members] < 0)
        if pending.size == 0:
            return
        unique, first = np.unique(members[pending], return_index=True)
        table[unique] = batch.old_state[start:stop][pending[first]]

    def _grown(self, size: int) -> npt.NDArray[np.int8]:
        table = self._epochs[-1]
        if table.shape[0] < size:
            grown = np.full(max(size, 2 * table.shape[0]), -1, np.int8)
            grown[: table.shape[0]] = table
            self._epochs[-1] = table = grown
        return table

    def result(self, n_members: int) -> Resolution:
        states = np.full((len(self._epochs), n_members), -1, np.int8)
        for e, table in enumerate(self._epochs):
            k = min(n_members, table.shape[0])
            states[e, :k] = table[:k]
        return Resolution(states, self._first, self._last)
