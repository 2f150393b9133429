"""Converter rows on their way to a live engine, held back so snapshots can be placed.

A live source decodes events a varying fraction of a second after they happen.
If every row went straight into the engine, a snapshot could only be taken at
the latest decoded moment, and consecutive snapshots would be unevenly spaced.
Rows wait here instead, and a snapshot at a chosen moment takes exactly the rows
up to it.  Rows older than what the engine has already accounted (a lost
switch found out after a snapshot passed it) are placed at that point: the
figures handed out never change afterwards.

Sightings are rows a source adds from elsewhere (a thread seen asleep in /proc
at a moment): they are merged in by time with the converter's rows.
"""

from __future__ import annotations

import numpy as np

from runstate.model.events import EventBatch


class RowQueue:
    """Time-sorted rows waiting for the engine."""

    def __init__(self) -> None:
        self._batches: list[EventBatch] = []
        self._sightings: list[EventBatch] = []
        #: rows that came in behind a moment already accounted, placed at it
        self.late_rows = 0

    def __len__(self) -> int:
        return sum(len(b) for b in self._batches + self._sightings)

    def push(self, batch: EventBatch) -> None:
        """Rows after every row pushed before (as a converter hands them out)."""
        if len(batch):
            self._batches.append(batch)

    def add_sightings(self, batch: EventBatch) -> None:
        """Time-sorted rows from outside the converter, at any time."""
        if len(batch):
            self._sightings.append(batch)

    def take_until(self, t_ns: int, accounted_ns: int | None) -> EventBatch:
        """The rows up to ``t_ns`` (inclusive), none before ``accounted_ns``."""
        rows = self._merge(self._take(self._batches, t_ns), self._take(self._sightings, t_ns))
        return rows if accounted_ns is None else self._not_before(rows, accounted_ns)

    @staticmethod
    def _merge(rows: EventBatch, sightings: EventBatch) -> EventBatch:
        """Sightings after the converter's rows of the same time."""
        if not len(sightings):
            return rows
        both = EventBatch.concat([rows, sightings])
        order = np.argsort(both.time, kind="stable")
        return EventBatch(both.time[order], both.member[order], both.old_state[order],
                          both.new_state[order])

    @staticmethod
    def _take(batches: list[EventBatch], t_ns: int) -> EventBatch:
        taken: list[EventBatch] = []
        while batches:
            batch = batches[0]
            if int(batch.time[-1]) <= t_ns:
                taken.append(batches.pop(0))
                continue
            cut = int(np.searchsorted(batch.time, t_ns, side="right"))
            if cut:
                taken.append(batch.slice(0, cut))
                batches[0] = batch.slice(cut, len(batch))
            break
        return EventBatch.concat(taken)

    def _not_before(self, rows: EventBatch, t_ns: int) -> EventBatch:
        late = int(np.searchsorted(rows.time, t_ns, side="left"))
        if late == 0:
            return rows
        self.late_rows += late
        time = rows.time.copy()
        time[:late] = t_ns
        return EventBatch(time, rows.member, rows.old_state, rows.new_state)
