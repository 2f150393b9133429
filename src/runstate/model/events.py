"""The normalized, columnar event batch every reader produces and the engine consumes.

One row is one member state change: at ``time`` member ``member`` (an index
into the :class:`~runstate.model.registry.Registry`) went from ``old_state`` to
``new_state`` (:class:`~runstate.model.states.MemberState` codes).  The old
state of a member's first row tells the engine what it was doing before; the
engine checks it against what it knows on later rows.

A row with ``member == -1`` is a marker: ``new_state == LOSS_BEGIN`` starts a
window of lost data (every domain becomes ``lost``), ``LOSS_END`` ends one.
Rows are sorted by ``time`` (non-decreasing) within and across batches.

``time`` is in *ticks*: nanoseconds, unless the source says its clock is a TSC
(``SourceInfo.cpu_hz`` set), in which case ticks are TSC cycles.  The engine
never converts; reports convert to ns exactly (largest-remainder rounding, so
conservation holds in ns too) and also give the exact cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TIME_DTYPE = np.int64
MEMBER_DTYPE = np.int32
STATE_DTYPE = np.int8


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A time-sorted chunk of member state changes (see module docstring)."""

    time: npt.NDArray[np.int64]
    member: npt.NDArray[np.int32]
    old_state: npt.NDArray[np.int8]
    new_state: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @classmethod
    def from_columns(
        cls,
        time: Sequence[int] | npt.ArrayLike,
        member: Sequence[int] | npt.ArrayLike,
        old_state: Sequence[int] | npt.ArrayLike,
        new_state: Sequence[int] | npt.ArrayLike,
    ) -> EventBatch:
        """Build a batch, converting each column to its canonical contiguous dtype."""
        return cls(
            np.ascontiguousarray(time, dtype=TIME_DTYPE),
            np.ascontiguousarray(member, dtype=MEMBER_DTYPE),
            np.ascontiguousarray(old_state, dtype=STATE_DTYPE),
            np.ascontiguousarray(new_state, dtype=STATE_DTYPE),
        )

    @classmethod
    def empty(cls) -> EventBatch:
        return cls.from_columns([], [], [], [])

    def slice(self, start: int, stop: int) -> EventBatch:
        return EventBatch(
            self.time[start:stop],
            self.member[start:stop],
            self.old_state[start:stop],
            self.new_state[start:stop],
        )

    @staticmethod
    def concat(batches: Sequence[EventBatch]) -> EventBatch:
        if not batches:
            return EventBatch.empty()
        return EventBatch(
            np.concatenate([b.time for b in batches]),
            np.concatenate([b.member for b in batches]),
            np.concatenate([b.old_state for b in batches]),
            np.concatenate([b.new_state for b in batches]),
        )
