"""The offline pipeline: source -> (first pass) -> engine -> :class:`RunResult`.

A re-readable source is read twice so that every member's state before its
first record is known from the window start (exact mode, see
``engine.resolve``).  A stream (stdin) is read once; its result is marked
provisional.

A user's window (:class:`TraceWindow`) is given in seconds of the trace's own
clock, and for Xen those count from the first record, which is known only once
the trace is read.  So it is turned into ticks only when the trace's origin
and span are known: after the first pass in exact mode (it sees the whole
file), at the first batch of a one-pass read.  A window is then the same span
of the same engine run an ``--interval`` row would be: its figures equal that
row's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from runstate.engine.core import Engine, IntervalRunSink, IntervalSink
from runstate.engine.resolve import Resolution, Resolver
from runstate.engine.results import IntervalResult, RunResult
from runstate.errors import InputError, UsageError
from runstate.model.events import EventBatch
from runstate.sources.base import Source, SourceInfo

if TYPE_CHECKING:  # fractions (with decimal) loads only for a window in seconds or an interval
    from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Window:
    """Window and interval in the trace's own ticks (ns, or TSC cycles), used as given."""

    start_ticks: int | None = None
    end_ticks: int | None = None
    interval_ticks: int | None = None


@dataclass(frozen=True, slots=True)
class TraceWindow:
    """A user's window: seconds of the trace's clock, resolved against the trace itself.

    ``start_s``/``end_s`` count as ``perf script`` prints times (the clock's own
    seconds), or for TSC traces from the first record.  Parts outside the trace
    are clipped (with a note), a window wholly outside it is an error naming the
    trace's span.  ``interval_ns`` is a duration in ns (converted to ticks).
    """

    start_s: Fraction | None = None
    end_s: Fraction | None = None
    interval_ns: int | None = None

    def __post_init__(self) -> None:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise UsageError("--to must be after --from")


#: more intervals than this in one run is refused: the rows could not be read anyway
MAX_INTERVALS = 10_000_000


@dataclass(frozen=True, slots=True)
class IntervalLimit:
    """The most intervals a caller accepts, and what to tell the user beyond it."""

    count: int = MAX_INTERVALS
    advice: str = "give a larger --interval"


#: progress callback: (pass name, rows in the batch just processed)
ProgressSink = Callable[[str, int], None]

#: engine anomalies that ``strict`` turns into errors
STRICT_ANOMALIES = ("old_state_mismatch", "no_change_events", "unbalanced_loss_markers")


def analyze(
    source: Source,
    window: Window | TraceWindow = Window(),
    *,
    one_pass: bool = False,
    on_interval: IntervalSink | None = None,
    on_interval_run: IntervalRunSink | None = None,
    progress: ProgressSink | None = None,
    strict: bool = False,
    interval_limit: IntervalLimit = IntervalLimit(),
) -> RunResult:
    """Run the engine over ``source`` and return the result for the window.

    With ``strict``, inconsistent member rows (see :data:`STRICT_ANOMALIES`) are
    an :class:`InputError` instead of a counted anomaly.  Intervals go to
    ``on_interval_run`` (quiet stretches in one call), else ``on_interval``,
    else into the result.
    """
    exact = source.rereadable and not one_pass
    resolution, batches, first_time, span = _read_span(source, exact, progress)
    resolved = _resolve(window, source.info, span)
    ticks = resolved.window
    _check_interval_count(ticks, span, source.info, interval_limit)
    counter = _IntervalCounter(ticks, source.info, interval_limit, on_interval,
                               on_interval_run)
    engine = Engine(
        source.registry,
        start_ticks=_start(ticks, resolution, source, first_time),
        interval_ticks=ticks.interval_ticks,
        resolution=resolution,
        initial=source.info.initial_states,
        on_interval_run=counter.run,
    )
    # a source's own end (a recording's stop time) clips events like a user-given one;
    # events after the end would otherwise be accounted past the reported window
    end = ticks.end_ticks if ticks.end_ticks is not None else source.info.end_ticks
    seen = _LastTime()
    if not (exact and _accounted_by_source(source, engine, end, progress)):
        for batch in _clipped(seen.track(batches), end):
            engine.feed(batch)
            if progress is not None:
                progress("analyze", len(batch))
    if engine.start_ticks is None:
        raise InputError(source.info.path, "no member events in the input"
                         + (" within the window" if ticks.start_ticks is not None else ""))
    if not exact and isinstance(window, TraceWindow):
        end = resolved.finish_one_pass(source.info, seen.time, end)
    if end is None:
        end = source.info.end_ticks  # a one-pass source may learn its end while reading
    result = replace(engine.finish(end), intervals=tuple(counter.kept))
    anomalies = {**source.info.anomalies, **result.anomalies}
    if strict:
        _refuse_anomalies(source, result.anomalies)
    for note in resolved.notes:
        if note not in source.info.notes:
            source.info.notes.append(note)
    return replace(result, anomalies=anomalies)


def _read_span(source: Source, exact: bool, progress: ProgressSink | None
               ) -> tuple[Resolution | None, Iterator[EventBatch], int | None, _Span]:
    """Read as far as the trace's span is known: the whole first pass in exact mode, the
    first batch of a one-pass read.  Returns the batches to analyze from the start."""
    if not exact:
        first_time, batches = _peek_first_time(source.batches())
        return None, batches, first_time, _Span.of(source.info, first_time, None)
    resolution, replay = _first_pass(source, progress)
    if replay is None:
        source.info.anomalies.clear()  # the second pass counts them again
    batches = iter(replay) if replay is not None else source.batches()
    return resolution, batches, resolution.first_time_ticks, _Span.of(
        source.info, resolution.first_time_ticks, resolution.last_time_ticks)


@dataclass(frozen=True, slots=True)
class _Span:
    """The trace's own span in ticks (``end`` None: not known yet, a one-pass read)."""

    start: int | None
    end: int | None

    @classmethod
    def of(cls, info: SourceInfo, first: int | None, last: int | None) -> _Span:
        return cls(info.start_ticks if info.start_ticks is not None else first,
                   info.end_ticks if info.end_ticks is not None else last)


@dataclass(frozen=True, slots=True)
class _Seconds:
    """Converts between the user's seconds and the trace's ticks."""

    origin: int
    hz: int

    @classmethod
    def of(cls, info: SourceInfo) -> _Seconds:
        if info.cpu_hz is None:
            return cls(0, 1_000_000_000)
        return cls(info.origin if info.origin is not None else 0, int(round(info.cpu_hz)))

    def ticks(self, seconds: Fraction) -> int:
        return self.origin + round(seconds * self.hz)

    def text(self, tick: int) -> str:
        """Seconds as the user types them: up to 9 decimals, trailing zeros dropped."""
        from fractions import Fraction

        value = Fraction(tick - self.origin, self.hz)
        whole, nanos = divmod(round(abs(value) * 10**9), 10**9)
        sign = "-" if value < 0 else ""
        digits = f"{nanos:09d}".rstrip("0")
        return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


@dataclass(slots=True)
class _Resolved:
    """A window in ticks, the notes it earned, and what is left for a one-pass read."""

    window: Window
    notes: list[str]
    asked_end: int | None = None
    seconds: _Seconds | None = None
    span_start: int | None = None

    def finish_one_pass(self, info: SourceInfo, last_seen: int | None,
                        end: int | None) -> int | None:
        """A one-pass read learns the trace's end only now: refuse or clip the window."""
        if self.seconds is None or last_seen is None:
            return end
        trace_end = info.end_ticks if info.end_ticks is not None else last_seen
        start = self.window.start_ticks
        if start is not None and start >= trace_end:
            raise _outside(info, self.seconds, start, self.asked_end,
                           (self.span_start, trace_end))
        if end is not None and end > trace_end:
            self.notes.append(_clip_note(self.seconds, self.window.start_ticks, end,
                                         self.window.start_ticks, trace_end))
            return trace_end
        return end


def _resolve(window: Window | TraceWindow, info: SourceInfo, span: _Span) -> _Resolved:
    if isinstance(window, Window):
        return _Resolved(window, [])
    sec = _Seconds.of(info)
    interval = None
    if window.interval_ns is not None:
        from fractions import Fraction

        interval = max(1, round(Fraction(window.interval_ns * sec.hz, 10**9)))
    start = None if window.start_s is None else sec.ticks(window.start_s)
    end = None if window.end_s is None else sec.ticks(window.end_s)
    clipped_start = start if start is None or span.start is None else max(start, span.start)
    clipped_end = end if end is None or span.end is None else min(end, span.end)
    first = clipped_start if clipped_start is not None else span.start
    last = clipped_end if clipped_end is not None else span.end
    if (start is not None or end is not None) and first is not None and last is not None \
            and first >= last:
        raise _outside(info, sec, start, end, (span.start, span.end))
    notes = []
    if (clipped_start, clipped_end) != (start, end):
        notes.append(_clip_note(sec, start, end, clipped_start, clipped_end))
    return _Resolved(Window(clipped_start, clipped_end, interval), notes, asked_end=end,
                     seconds=sec if span.end is None else None, span_start=span.start)


def _outside(info: SourceInfo, sec: _Seconds, start: int | None, end: int | None,
             span: tuple[int | None, int | None]) -> InputError:
    asked = f"{_or(sec, start, 'start')} .. {_or(sec, end, 'end')} s"
    trace = f"{_or(sec, span[0], '?')} .. {_or(sec, span[1], '?')} s"
    return InputError(info.path, f"the window {asked} is outside the trace, which spans "
                      f"{trace}" + (" (seconds since its first record)"
                                    if info.cpu_hz is not None else ""))


def _clip_note(sec: _Seconds, start: int | None, end: int | None,
               new_start: int | None, new_end: int | None) -> str:
    return (f"window {_or(sec, start, 'start')} .. {_or(sec, end, 'end')} s reaches "
            f"outside the trace: clipped to {_or(sec, new_start, 'start')} .. "
            f"{_or(sec, new_end, 'end')} s")


def _or(sec: _Seconds, tick: int | None, missing: str) -> str:
    return missing if tick is None else sec.text(tick)


def _check_interval_count(window: Window, span: _Span, info: SourceInfo,
                          limit: IntervalLimit) -> None:
    """Refuse, before any work, a run whose intervals the user could never read."""
    if window.interval_ticks is None:
        return
    start = window.start_ticks if window.start_ticks is not None else span.start
    end = window.end_ticks if window.end_ticks is not None else span.end
    if start is None or end is None or end <= start:
        return
    count = -(-(end - start) // window.interval_ticks)
    if count > limit.count:
        raise _too_many(info, count, window.interval_ticks, limit)


def _too_many(info: SourceInfo, count: int, interval: int, limit: IntervalLimit) -> UsageError:
    sec = _Seconds.of(info)
    return UsageError(f"{info.path}: an interval of {sec.text(sec.origin + interval)} s "
                      f"makes {count:,} intervals, more than {limit.count:,}; {limit.advice}")


class _IntervalCounter:
    """Hands intervals to the caller's sink (or keeps them) and refuses too many.

    Counting as they come matters for a one-pass read, whose end is not known
    in advance.
    """

    def __init__(self, window: Window, info: SourceInfo, limit: IntervalLimit,
                 on_interval: IntervalSink | None, on_run: IntervalRunSink | None) -> None:
        self._window = window
        self._info = info
        self._limit = limit
        self._on_interval = on_interval
        self._on_run = on_run
        #: the intervals, when the caller gave no sink
        self.kept: list[IntervalResult] = []
        self._count = 0

    def run(self, first: IntervalResult, count: int) -> None:
        self._count += count
        if self._count > self._limit.count:
            assert self._window.interval_ticks is not None
            raise _too_many(self._info, self._count, self._window.interval_ticks, self._limit)
        if self._on_run is not None:
            self._on_run(first, count)
            return
        sink = self._on_interval or self.kept.append
        step = first.end_ticks - first.start_ticks
        for k in range(count):
            # repeats share one figures dict: nothing changes it after this
            sink(first if k == 0 else IntervalResult(
                first.start_ticks + k * step, first.end_ticks + k * step, first.domains))


class _LastTime:
    """Remembers the time of the last row read (a one-pass read's end of trace)."""

    def __init__(self) -> None:
        self.time: int | None = None

    def track(self, batches: Iterator[EventBatch]) -> Iterator[EventBatch]:
        for batch in batches:
            if len(batch):
                self.time = int(batch.time[-1])
            yield batch


def _peek_first_time(batches: Iterator[EventBatch]
                     ) -> tuple[int | None, Iterator[EventBatch]]:
    """Read up to the first non-empty batch: a stream's origin is known from there on."""
    held = []
    for batch in batches:
        held.append(batch)
        if len(batch):
            return int(batch.time[0]), chain(held, batches)
    return None, iter(held)


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
    own = _source_first_pass(source, progress)
    if own is not None:
        return own, None
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


def _source_first_pass(source: Source, progress: ProgressSink | None) -> Resolution | None:
    """The source's own first pass, if it has one that takes this input, else None.

    A source may offer ``first_pass(progress)`` returning ``(states, first_time,
    last_time)`` as a :class:`Resolution` holds them: a xentrace file learns them
    in one C scan instead of yielding every batch (``sources.xentrace.fastpath``).
    """
    own = getattr(source, "first_pass", None)
    if own is None:
        return None
    found = own(None if progress is None else lambda rows: progress("scan", rows))
    return None if found is None else Resolution(*found)


def _accounted_by_source(source: Source, engine: Engine, end_ticks: int | None,
                         progress: ProgressSink | None) -> bool:
    """True if the source accounted its rows itself, leaving the engine in the state
    feeding them would (else the engine is untouched, and is fed the batches).

    A source may offer ``account(engine, end_ticks)`` returning the rows it
    accounted, or None: a xentrace file merges and accounts its whole second pass
    in C, no row going through Python (``sources.xentrace.fastpath``).
    """
    account = getattr(source, "account", None)
    rows = None if account is None else account(engine, end_ticks)
    if rows is not None and progress is not None:
        progress("analyze", rows)
    return rows is not None


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


def _start(window: Window, resolution: Resolution | None, source: Source,
           first_time: int | None) -> int | None:
    if window.start_ticks is not None:
        return window.start_ticks
    if source.info.start_ticks is not None:
        return source.info.start_ticks
    return resolution.first_time_ticks if resolution is not None else first_time


def _clipped(batches: Iterator[EventBatch], end_ticks: int | None) -> Iterator[EventBatch]:
    """Stop at ``end_ticks``: events after the window end do not count."""
    for batch in batches:
        if end_ticks is not None and len(batch) and int(batch.time[-1]) > end_ticks:
            cut = int(np.searchsorted(batch.time, end_ticks, side="right"))
            yield batch.slice(0, cut)
            return
        yield batch
