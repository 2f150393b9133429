"""A source's slices over a window: the timeline driven exactly as the pipeline drives the engine.

The same first pass (initial states, :class:`~runstate.engine.resolve.Resolver`),
window start and end as the run that made the report, so the slices agree with
its figures.  :class:`SliceStore` keeps slices in memory for
pictures; exports stream them instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from runstate.engine.resolve import Resolver
from runstate.engine.results import RunResult
from runstate.engine.timeline import Lane, SliceBatch, SliceSink, Timeline
from runstate.sources.base import Source


def stream_slices(source: Source, result: RunResult, sink: SliceSink) -> None:
    """Read ``source`` again and send the slices of the run that gave ``result``.

    The window is the result's; exact mode (a result that is not provisional)
    learns initial states with the same first pass the pipeline makes.  Reading
    again must not count the reader's anomalies twice: they are restored.
    """
    anomalies = dict(source.info.anomalies)
    try:
        resolution = None
        if not result.provisional:
            resolver = Resolver()
            for batch in source.batches():
                resolver.feed(batch)
            resolution = resolver.result(source.registry.n_members)
        timeline = Timeline(source.registry, sink, start_ticks=result.start_ticks,
                            end_ticks=result.end_ticks, resolution=resolution,
                            initial=source.info.initial_states)
        for batch in source.batches():
            if not timeline.feed(batch):
                break
        timeline.finish()
    finally:
        source.info.anomalies.clear()
        source.info.anomalies.update(anomalies)


@dataclass(slots=True)
class SliceStore:
    """Slices kept in memory, per lane, as concatenated columns."""

    _parts: dict[Lane, list[SliceBatch]] = field(
        default_factory=lambda: {lane: [] for lane in Lane})

    def __call__(self, batch: SliceBatch) -> None:
        self._parts[batch.lane].append(batch)

    def of(self, lane: Lane, owner: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                   npt.NDArray[np.int8]]:
        """(start, end, state) of one domain's or member's slices, in time order."""
        starts, ends, states = [], [], []
        for part in self._parts[lane]:
            pick = part.owner == owner
            starts.append(part.start[pick])
            ends.append(part.end[pick])
            states.append(part.state[pick])
        if not starts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
        start = np.concatenate(starts)
        order = np.argsort(start, kind="stable")
        return start[order], np.concatenate(ends)[order], np.concatenate(states)[order]
