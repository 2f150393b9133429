"""The perf.data reader: sched tracepoint samples, read directly (no perf binary) -> batches.

The file is read in parts, each in its own module: the header, attrs and
feature sections (:mod:`.perfdata_header`), the recording kernel's tracepoint
formats in HEADER_TRACING_DATA (:mod:`.perfdata_tracing`), the data section's
records (:mod:`.perfdata_records`) and their time order under perf's
``FINISHED_ROUND`` rule (:mod:`.perfdata_order`).  This module drives them and
feeds the events to the sched converter.

Before conversion one scan collects thread names and thread groups (COMM and
FORK records in time order; a thread no COMM record names gets the comm its
switches carry) and the threads that have events (the default grouping is
``vm`` only if a vCPU thread is among them).  That scan keeps the decoded
events (up to ``CACHE_BYTES``) for the two passes of the analysis, and with
them in memory each LOST record's window starts exactly at its CPU's last
kept event.  perf's untimed end-of-run LOST_SAMPLES summaries are only counted.

A file whose writer was killed keeps a zero data size in its header and no
feature sections: the data runs to the end of the file (a partial last record
is dropped and counted), and the formats are taken from this host's tracefs
when the file has none (noted).  Such a file, or one cut short (its header
declares more data than there is), is complete only up to a time perf's rounds
and per-CPU buffers prove (see :mod:`.perfdata_order`): the trace ends there,
later events are left out (``events_after_cut``) and a note names the byte
where the data stops.
Damage elsewhere is an InputError with the byte offset (``--lenient`` skips and
counts malformed samples).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import numpy as np

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.sources.base import FormatInfo, ReadOptions, SourceInfo
from runstate.sources.linux.perfdata_header import MAGIC, read_header, system_wide
from runstate.sources.linux.perfdata_order import RoundOrder, slice_events
from runstate.sources.linux.perfdata_records import (
    REC_COMM,
    REC_COMPRESSED,
    REC_FINISHED_ROUND,
    REC_FORK,
    REC_LOST,
    REC_LOST_SAMPLES,
    REC_SAMPLE,
    RecordDecoder,
    SideBand,
    tracepoint_attrs,
)
from runstate.sources.linux.perfdata_tracing import host_formats
from runstate.sources.linux.sched import (
    NEEDED_EVENTS,
    PID_LIMIT,
    RECORD_HINT,
    LostEvents,
    sched_batches,
)
from runstate.sources.linux.schedevents import SchedEvents, TaskNames

#: decoded events kept in memory between the two passes, at most (about 29 B/event)
CACHE_BYTES = 96 << 20


class PerfDataSource:
    """A perf.data file of sched tracepoint samples."""

    def __init__(self, path: str, options: ReadOptions) -> None:
        self.path = path
        self._options = options
        self.registry = Registry()
        self.info = SourceInfo(format="perf-data", path=path)
        self.rereadable = True
        self._names: TaskNames | None = None
        self._cache: list[SchedEvents | LostEvents] | None = None
        self._active: set[int] | None = None
        self._untimed = 0
        self._after_cut = 0
        try:
            with open(path, "rb") as f:
                self.header = read_header(path, f)
        except OSError as err:
            raise InputError(path, err.strerror or str(err)) from None
        self._setup()

    def _setup(self) -> None:
        h = self.header
        tp = tracepoint_attrs(h)
        if not tp:
            raise InputError(self.path, "no tracepoint events in the file; runstate needs "
                             + ", ".join(NEEDED_EVENTS) + "; " + RECORD_HINT)
        self.info.clock = tp[0].clock
        if h.truncated:
            self.info.notes.append("perf.data was not finished (writer killed?): read up to "
                                   "the last whole record")
        if not h.formats:
            h.formats = host_formats()
            if not h.formats:
                raise InputError(self.path, "the file carries no tracepoint formats (perf "
                                 "killed before it finished writing?) and this host has no "
                                 "tracefs sched formats to use instead")
            self.info.notes.append("the file carries no tracepoint formats; used this "
                                   "host's tracefs formats")
        self._records = RecordDecoder(self.path, h, self._options, self.info)
        self._filtered = not system_wide(h.cmdline, h.attrs)
        # perf -a opens each event once per CPU: a cut file has all CPUs once it has seen
        # this many (per-task recordings have no such count)
        self._n_streams = None if self._filtered else len(tp[0].ids)
        if self._filtered:
            self.info.notes.append("perf recorded only some tasks (no -a): switch-ins by "
                                   "untraced tasks are missing, so running and runnable times "
                                   "are estimates and host idleness is unknown; record with -a")

    # ---- public ----------------------------------------------------------------

    def batches(self) -> Iterator[EventBatch]:
        names = self._task_names()
        self.info.anomalies.clear()
        self.info.initial_states.clear()
        if self._untimed:
            self.info.anomalies["lost_samples_untimed"] = self._untimed
        if self._after_cut:
            self.info.anomalies["events_after_cut"] = self._after_cut
        items = iter(self._cache) if self._cache is not None else self._items()
        yield from sched_batches(self.path, items, names, self.registry, self.info,
                                 self._options, n_cpus=self.header.n_cpus,
                                 active=self._active, filtered=self._filtered)

    def _scan_events(self) -> None:
        """Decode once: the tids with events, and the stream itself while it fits CACHE_BYTES."""
        kept: list[SchedEvents | LostEvents] | None = []
        seen = np.zeros(PID_LIMIT, np.bool_)
        size = 0
        for item in self._items():
            if isinstance(item, LostEvents):
                if kept is not None:
                    kept.append(item)
                continue
            for col in (item.pid, item.other_pid):
                seen[col[(col > 0) & (col < PID_LIMIT)]] = True
            if kept is not None:
                kept.append(item)
                size += 29 * len(item)
                if size > CACHE_BYTES:
                    kept = None
        self._cache = None if kept is None else self._place_losses(kept)
        self._active = set(np.flatnonzero(seen).tolist())

    def _task_names(self) -> TaskNames:
        if self._names is not None:
            return self._names
        names = TaskNames()
        names.comm.update(self.header.cmdlines)
        side: list[SideBand] = []
        for buf, offs, types, _ in self._records.blocks():
            wanted = np.flatnonzero((types == REC_COMM) | (types == REC_FORK))
            for o, kind in zip(offs[wanted].tolist(), types[wanted].tolist(), strict=True):
                record = self._records.side_band(buf, o, kind, len(side))
                if record is not None:
                    side.append(record)
        for record in sorted(side):
            record.apply(names)
        self._records.naming = names
        self._scan_events()
        self._records.naming = None
        self._names = names
        return names

    def _items(self) -> Iterator[SchedEvents | LostEvents]:
        """Time-ordered chunks of about ``chunk_rows`` events, with losses between them."""
        held: list[SchedEvents] = []
        n = 0
        for item in self._ordered():
            if isinstance(item, LostEvents):
                if held:
                    yield SchedEvents.concat(held)
                    held, n = [], 0
                yield item
                continue
            held.append(item)
            n += len(item)
            if n >= self._options.chunk_rows:
                yield SchedEvents.concat(held)
                held, n = [], 0
        if held:
            yield SchedEvents.concat(held)

    def _ordered(self) -> Iterator[SchedEvents | LostEvents]:
        order = RoundOrder(self._n_streams)
        for buf, offs, types, base in self._records.blocks():
            if np.any(types == REC_COMPRESSED):
                pos = int(offs[np.argmax(types == REC_COMPRESSED)])
                raise InputError(self.path, "compressed perf.data (perf record -z) is not "
                                 "supported; record without -z", offset=base + pos)
            rounds = offs[types == REC_FINISHED_ROUND]
            samples = offs[types == REC_SAMPLE]
            records = self._records
            events, sample_pos = records.samples(buf, samples)
            losses = [records.lost(buf, o, 16) for o in offs[types == REC_LOST].tolist()]
            losses += [records.lost(buf, o, 8) for o in offs[types == REC_LOST_SAMPLES].tolist()]
            losses = self._placed(losses)
            yield from order.add(events, sample_pos, rounds, losses)
        if not self.header.truncated:
            yield from order.flush_all()
            return
        yield from order.flush_complete()
        self._end_at_cut(order)

    def _end_at_cut(self, order: RoundOrder) -> None:
        """The trace of a cut-off file ends where its data is last known complete."""
        stop = self.header.data_offset + self.header.data_size
        if order.complete_until is None:
            raise InputError(self.path, "the data stops before perf finished two rounds and "
                             "before every CPU's events began, so no span of it is known "
                             "complete", offset=stop)
        self._after_cut = order.dropped
        self.info.end_ticks = order.complete_until
        note = (f"{self.path}: the data stops at byte {stop}; the trace ends at "
                f"{order.complete_until / 1e9:.9f} s, the last time the file holds every "
                f"CPU's events; {order.dropped} later events are left out")
        if note not in self.info.notes:
            self.info.notes.append(note)

    def _place_losses(self, items: list[SchedEvents | LostEvents]
                      ) -> list[SchedEvents | LostEvents]:
        """Put each loss where it began: right after the last event its CPU kept.

        While streaming, a LOST record is met only with the first event after
        the loss; with the whole stream in memory the window can start exactly.
        """
        losses = [i for i in items if isinstance(i, LostEvents)]
        events = [i for i in items if isinstance(i, SchedEvents)]
        if not losses:
            return items
        allev = SchedEvents.concat(events)
        placed = []
        for cpu in sorted({x.cpu for x in losses}):
            times = allev.time[allev.cpu == cpu]
            for loss in (x for x in losses if x.cpu == cpu):
                at = int(np.searchsorted(times, loss.end_ns, "left"))
                begin = int(times[at - 1]) if at > 0 else loss.end_ns
                placed.append(LostEvents(cpu, begin, loss.end_ns, loss.count))
        out: list[SchedEvents | LostEvents] = []
        start = 0
        step = self._options.chunk_rows
        for loss in sorted(placed, key=lambda x: x.begin_ns):
            at = int(np.searchsorted(allev.time, loss.begin_ns, "right"))
            out.extend(slice_events(allev, a, min(a + step, at)) for a in range(start, at, step))
            out.append(loss)
            start = max(start, at)
        n = len(allev)
        out.extend(slice_events(allev, a, min(a + step, n)) for a in range(start, n, step))
        return out

    def _placed(self, losses: list[LostEvents]) -> list[LostEvents]:
        """Losses with a time; perf's end-of-run LOST_SAMPLES summaries have none.

        Those repeat what the timed LOST records already said, so they are only
        counted (``lost_samples_untimed``), never placed in the timeline.
        """
        placed = []
        for loss in losses:
            if loss.end_ns > 0:
                placed.append(loss)
            elif self._names is None:
                self._untimed += loss.count or 1
        return placed


class PerfDataReader:
    FORMAT = FormatInfo("perf-data", "perf.data from perf record -e sched:... (read directly)",
                        100)

    def sniff(self, path: str, head: bytes) -> bool:
        return head[:8] == MAGIC

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions
             ) -> PerfDataSource:
        if stream is not None:
            raise InputError(path, "perf.data cannot be read from stdin; give the file path")
        return PerfDataSource(path, options)


PERF_DATA_READER = PerfDataReader()
