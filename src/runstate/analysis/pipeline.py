"""The offline pipeline: source -> (first pass) -> engine -> :class:`RunResult`.

A re-readable source is read twice so that every member's state before its
first record is known from the window start (exact mode, see
``engine.resolve``).  A stream (stdin) is read once; its result is marked
provisional.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from runstate.engine.core import Engine, IntervalSink
from runstate.engine.resolve import Resolution, Resolver
from runstate.engine.results import RunResult
from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.sources.base import Source


@dataclass(frozen=True, slots=True)
class Window:
    """Optional user window and interval, in the trace's own ns clock."""

    start_ns: int | None = None
    end_ns: int | None = None
    interval_ns: int | None = None


#: progress callback: (pass name, rows in the batch just processed)
ProgressSink = Callable[[str, int], None]

#: engine anomalies that ``strict`` turns into errors
STRICT_ANOMALIES = ("old_state_mismatch", "no_change_events", "unbalanced_loss_markers")


def analyze(
    source: Source,
    window: Window = Window(),
    *,
    one_pass: bool = False,
    on_interval: IntervalSink | None = None,
    progress: ProgressSink | None = None,
    strict: bool = False,
) -> RunResult:
    """Run the engine over ``source`` and return the result for the window.

    With ``strict``, inconsistent member rows (see :data:`STRICT_ANOMALIES`) are
    an :class:`InputError` instead of a counted anomaly.
    """
    resolution = None
    replay: list[EventBatch] | None = None
    if source.rereadable and not one_pass:
        resolution, replay = _first_pass(source, progress)
        if replay is None:
            source.info.anomalies.clear()  # the second pass counts them again
    engine = Engine(
        source.registry,
        start_ns=_start(window, resolution, source),
        interval_ns=window.interval_ns,
        resolution=resolution,
        initial=source.info.initial_states,
        on_interval=on_interval,
    )
    # a source's own end (a recording's stop time) clips events like a user-given one;
    # events after the end would otherwise be accounted past the reported window
    end = window.end_ns if window.end_ns is not None else source.info.end_ns
    batches = iter(replay) if replay is not None else source.batches()
    for batch in _clipped(batches, end):
        engine.feed(batch)
        if progress is not None:
            progress("analyze", len(batch))
    if engine.start_ns is None:
        raise InputError(source.info.path, "no member events in the input"
                         + (" within the window" if window.start_ns is not None else ""))
    if end is None:
        end = source.info.end_ns  # a one-pass source may learn its end while reading
    result = engine.finish(end)
    anomalies = {**source.info.anomalies, **result.anomalies}
    if strict:
        _refuse_anomalies(source, result.anomalies)
    return replace(result, anomalies=anomalies)


def _refuse_anomalies(source: Source, anomalies: dict[str, int]) -> None:
    found = {k: anomalies[k] for k in STRICT_ANOMALIES if anomalies.get(k)}
    if found:
        raise InputError(source.info.path, "inconsistent member states (--strict): "
                         + ", ".join(f"{k} {v}" for k, v in found.items()))


#: batches of the first pass are kept for the second up to this many bytes; a larger
#: input is read again, so memory stays bounded however long the trace
REPLAY_BUDGET_BYTES = 64 << 20


def _first_pass(source: Source,
                progress: ProgressSink | None) -> tuple[Resolution, list[EventBatch] | None]:
    """Learn initial states; also return the batches when they fit the replay budget."""
    resolver = Resolver()
    kept: list[EventBatch] | None = []
    size = 0
    for batch in source.batches():
        resolver.feed(batch)
        if kept is not None:
            size += _nbytes(batch)
            if size <= REPLAY_BUDGET_BYTES:
                kept.append(_owned(batch))
            else:
                kept = None  # too large: the second pass reads the input again
        if progress is not None:
            progress("scan", len(batch))
    return resolver.result(source.registry.n_members), kept


def _nbytes(batch: EventBatch) -> int:
    return int(batch.time.nbytes + batch.member.nbytes + batch.old_state.nbytes
               + batch.new_state.nbytes)


def _owned(batch: EventBatch) -> EventBatch:
    """The batch with arrays of its own (a reader may hand out views of its buffers)."""
    columns = (batch.time, batch.member, batch.old_state, batch.new_state)
    if all(c.base is None for c in columns):
        return batch
    return EventBatch(batch.time.copy(), batch.member.copy(), batch.old_state.copy(),
                      batch.new_state.copy())


def _start(window: Window, resolution: Resolution | None, source: Source) -> int | None:
    if window.start_ns is not None:
        return window.start_ns
    if source.info.start_ns is not None:
        return source.info.start_ns
    return None if resolution is None else resolution.first_time_ns


def _clipped(batches: Iterator[EventBatch], end_ns: int | None) -> Iterator[EventBatch]:
    """Stop at ``end_ns``: events after the window end do not count."""
    for batch in batches:
        if end_ns is not None and len(batch) and int(batch.time[-1]) > end_ns:
            cut = int(np.searchsorted(batch.time, end_ns, side="right"))
            yield batch.slice(0, cut)
            return
        yield batch
