"""The perf.data reader: sched tracepoint samples, read directly (no perf binary) -> batches.

The file is read in parts, each in its own module: the header, attrs and
feature sections (:mod:`.perfdata_header`), the recording kernel's tracepoint
formats in HEADER_TRACING_DATA (:mod:`.perfdata_tracing`), the decoding plan of
the data section's records (:mod:`.perfdata_records`) and their time order
under perf's ``FINISHED_ROUND`` rule (:mod:`.perfdata_order`).  The data
section itself is read by one C pass (``_perfscan``) that maps the file a
window at a time and hands back large time-ordered columns; this module drives
it and feeds the events to the sched converter.

Before conversion one pass collects thread names and thread groups (COMM and
FORK records in time order; a thread no COMM record names gets the comm its
switches carry) and the threads that have events (the default grouping is
``vm`` only if a vCPU thread is among them).  That pass keeps the decoded
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

import os
from collections.abc import Iterator
from typing import IO

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.formats import PERF_DATA
from runstate.sources.linux import _perfscan
from runstate.sources.linux.perfdata_header import MAGIC, read_header, system_wide
from runstate.sources.linux.perfdata_order import EventStream, place_losses
from runstate.sources.linux.perfdata_records import RecordDecoder, tracepoint_attrs
from runstate.sources.linux.perfdata_tracing import host_formats
from runstate.sources.linux.sched import (
    NEEDED_EVENTS,
    RECORD_HINT,
    LostEvents,
    sched_batches,
)
from runstate.sources.linux.schedevents import SchedEvents, TaskNames

#: decoded events are kept in memory between the two passes up to this budget, counted
#: at 29 B an event (the columns take 33): about 3.5 M events, some 115 MB of columns
CACHE_BYTES = 96 << 20
CACHE_EVENTS = CACHE_BYTES // 29
#: the smallest sample a sched event can come from: header, time, cpu, raw size, raw data
MIN_SAMPLE_BYTES = 36


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
        #: what the names pass counted of damage; a replay of its cached events does not
        #: walk the file again, so the counts are carried over from it
        self._scan_damage: dict[str, int] = {}
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
        self._records.n_streams = None if self._filtered else len(tp[0].ids)
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
        if self._cache is not None:
            self.info.anomalies.update(self._scan_damage)
        items = iter(self._cache) if self._cache is not None else self._items(recycle=True)
        yield from sched_batches(self.path, items, names, self.registry, self.info,
                                 self._options, n_cpus=self.header.n_cpus,
                                 active=self._active, filtered=self._filtered)

    def _task_names(self) -> TaskNames:
        """Names, thread groups and active tids, from one pass that also keeps the events."""
        if self._names is not None:
            return self._names
        scanner = self._scanner()
        stream = EventStream(scanner, self._options.chunk_rows, self._cache_capacity(),
                             self._error, fixed=True)
        kept = list(self._ended(stream))
        if not stream.overflow and stream.count <= CACHE_EVENTS:
            self._cache = place_losses(kept, stream.events(), self._options.chunk_rows)
        self._active = set(scanner.active())
        self._names = self._names_from(scanner)
        return self._names

    def _names_from(self, scanner: _perfscan.Scanner) -> TaskNames:
        """The header's names, then COMM and FORK records in time order, then for threads
        still unnamed the comm their first switch carries."""
        names = TaskNames()
        names.comm.update(self.header.cmdlines)
        side = [self._records.side_band(record, kind, seq)
                for seq, (_, kind, record) in enumerate(scanner.side_band())]
        for record in sorted(r for r in side if r is not None):
            record.apply(names)
        for _, pid, comm in sorted(scanner.names()):
            if pid not in names.comm:
                names.comm[pid] = comm.decode("utf-8", "replace")
        return names

    def _cache_capacity(self) -> int:
        """Room for every event the data section can hold, up to the cache's size."""
        return min(self.header.data_size // MIN_SAMPLE_BYTES + 1, CACHE_EVENTS + 1)

    def _items(self, recycle: bool = False) -> Iterator[SchedEvents | LostEvents]:
        """Time-ordered chunks of about ``chunk_rows`` events, with losses between them
        (with ``recycle``, each valid until the next but one is asked for)."""
        rows = self._options.chunk_rows
        yield from self._ended(EventStream(self._scanner(), rows, 2 * rows + 1024, self._error,
                                           recycle=recycle))

    def _scanner(self) -> _perfscan.Scanner:
        """A C pass over the data section (it keeps a descriptor of the file of its own)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as err:
            raise InputError(self.path, err.strerror or str(err)) from None
        try:
            return self._records.scanner(fd)
        finally:
            os.close(fd)

    def _ended(self, stream: EventStream) -> Iterator[SchedEvents | LostEvents]:
        """The stream, then what its pass counted; a cut-off file ends where it is complete."""
        yield from stream
        status = stream.scanner.status()
        if self._names is None and status["untimed"]:
            self._untimed += status["untimed"]
        for name, key in (("malformed_samples", "malformed"), ("truncated_tail_bytes",
                                                                 "tail_bytes")):
            if status[key]:
                self.info.count(name, status[key])
                if self._names is None:
                    self._scan_damage[name] = status[key]
        if self.header.truncated:
            self._end_at_cut(status["complete_until"], status["dropped"])

    def _error(self, error: tuple[int, int, int, int]) -> InputError:
        return self._records.error(*error)

    def _end_at_cut(self, complete_until: int | None, dropped: int) -> None:
        """The trace of a cut-off file ends where its data is last known complete."""
        stop = self.header.data_offset + self.header.data_size
        if complete_until is None:
            raise InputError(self.path, "the data stops before perf finished two rounds and "
                             "before every CPU's events began, so no span of it is known "
                             "complete", offset=stop)
        self._after_cut = dropped
        self.info.end_ticks = complete_until
        note = (f"{self.path}: the data stops at byte {stop}; the trace ends at "
                f"{complete_until / 1e9:.9f} s, the last time the file holds every "
                f"CPU's events; {dropped} later events are left out")
        if note not in self.info.notes:
            self.info.notes.append(note)


class PerfDataReader:
    FORMAT = PERF_DATA

    def sniff(self, path: str, head: bytes) -> bool:
        return head[:8] == MAGIC

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions
             ) -> PerfDataSource:
        if stream is not None:
            raise InputError(path, "perf.data cannot be read from stdin; give the file path")
        return PerfDataSource(path, options)


PERF_DATA_READER = PerfDataReader()
