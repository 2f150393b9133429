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
events (up to ``CACHE_BYTES``) for the conversion, and with them in memory
each LOST record's window starts exactly at its CPU's last kept event.
perf's untimed end-of-run LOST_SAMPLES summaries are only counted.  The pass
starts as soon as the file is opened, on a thread of its own, in C: nothing
it needs imports numpy (:mod:`.perfdata_open`; this module imports numpy only
once the pass runs), so while it reads the file the main thread goes on
importing numpy and the rest of the analysis; a command that knows its input
early starts it sooner still (``perfdata_open.prefetch``).  The analysis's own
first pass converts once (:mod:`.firstpass`).

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

from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from runstate.errors import InputError
from runstate.sources.base import ReadOptions
from runstate.sources.formats import PERF_DATA
from runstate.sources.linux import _perfscan, perfdata_open
from runstate.sources.linux.perfdata_header import MAGIC
from runstate.sources.linux.perfdata_open import CACHE_BYTES as CACHE_BYTES
from runstate.sources.linux.perfdata_open import Opened, claim
from runstate.sources.linux.schedkinds import TaskNames

if TYPE_CHECKING:  # numpy is imported only once the names pass runs (see above)
    import numpy as np
    import numpy.typing as npt

    from runstate.model.events import EventBatch
    from runstate.sources.linux.keptread import KeptRead
    from runstate.sources.linux.sched import LostEvents
    from runstate.sources.linux.schedevents import SchedEvents


class PerfDataSource:
    """A perf.data file of sched tracepoint samples."""

    def __init__(self, path: str, options: ReadOptions) -> None:
        self.path = path
        self._options = options
        self.rereadable = True
        self._names: TaskNames | None = None
        self._cache: list[SchedEvents | LostEvents] | None = None
        self._active: set[int] | None = None
        self._untimed = 0
        self._after_cut = 0
        #: what the names pass counted of damage; a replay of its cached events does not
        #: walk the file again, so the counts are carried over from it
        self._scan_damage: dict[str, int] = {}
        #: the first pass's conversion, kept for the second read (see first_pass)
        self._kept: KeptRead | None = None
        claimed = claim(path, options)
        if claimed is None:
            opened = Opened(path, options)
            self._names_pass = opened.names_pass(perfdata_open.CACHE_EVENTS, guess=True)
        else:
            opened, self._names_pass = claimed
        self._opened = opened
        self.header = opened.header
        self.info = opened.info
        self._records = opened.records
        self._filtered = opened.filtered
        from runstate.model.registry import Registry  # numpy: while the pass runs

        self.registry = Registry()

    # ---- public ----------------------------------------------------------------

    def first_pass(self, progress: Callable[[int], None] | None = None
                   ) -> tuple[npt.NDArray[np.int8], int | None, int | None]:
        """Exact mode's first pass: each member's state before its first row per epoch,
        and the first and last row times (see :mod:`.firstpass`).

        The conversion it runs is kept for the next :meth:`batches` (in memory, or past
        its budget in a temporary file, see :mod:`.keptread`).
        """
        from runstate.sources.linux.firstpass import FirstRows
        from runstate.sources.linux.keptread import KeptRead

        first = FirstRows()
        kept: KeptRead | None = KeptRead()
        self._kept = None
        for batch in self.batches():
            first.feed(batch, self.registry.n_members)
            if kept is not None and not kept.add(batch):
                kept = None
            if progress is not None:
                progress(len(batch))
        if kept is not None and kept.finish():
            kept.note(self.info)
            self._kept = kept
        return first.states(self.registry.n_members), first.first, first.last

    def batches(self) -> Iterator[EventBatch]:
        if self._kept is not None:
            kept = self._kept
            kept.restore(self.info)
            if kept.spilled:  # read back once; a later read converts again
                self._kept = None
            try:
                yield from kept.replay()
            finally:
                kept.close()  # a file read back is deleted, even if left early
            return
        names = self._task_names()
        self.info.anomalies.clear()
        self.info.initial_states.clear()
        if self._untimed:
            self.info.anomalies["lost_samples_untimed"] = self._untimed
        if self._after_cut:
            self.info.anomalies["events_after_cut"] = self._after_cut
        if self._cache is not None:
            self.info.anomalies.update(self._scan_damage)
        from runstate.sources.linux.sched import sched_batches

        items = iter(self._cache) if self._cache is not None else self._items(recycle=True)
        yield from sched_batches(self.path, items, names, self.registry, self.info,
                                 self._options, n_cpus=self.header.n_cpus,
                                 active=self._active, filtered=self._filtered)

    def _task_names(self) -> TaskNames:
        """Names, thread groups and active tids, from the names pass (it also keeps the
        events while they fit the cache)."""
        if self._names is not None:
            return self._names
        from runstate.sources.linux.perfdata_order import place_losses, stored_items

        scanner = self._names_pass
        count, overflow = scanner.wait()
        cache = perfdata_open.CACHE_EVENTS
        if overflow and count <= cache:  # it guessed wrong: a pass that keeps them
            scanner = self._names_pass = self._opened.names_pass(cache, guess=False)
            count, overflow = scanner.wait()
        status = scanner.status()
        if status["error"][0]:
            raise self._error(status["error"])
        self._count_damage(status)
        if not overflow and count <= cache:
            kept, allev = stored_items(scanner, count)
            self._cache = place_losses(kept, allev, self._options.chunk_rows)
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

    def _items(self, recycle: bool = False) -> Iterator[SchedEvents | LostEvents]:
        """Time-ordered chunks of about ``chunk_rows`` events, with losses between them.

        With ``recycle`` a thread reads ahead while the caller converts, into
        buffers that take turns: each chunk is valid until the next item is asked
        for.  Otherwise every chunk has arrays of its own.
        """
        from runstate.sources.linux.perfdata_ahead import read_ahead
        from runstate.sources.linux.perfdata_order import EventStream

        rows, scanner = self._options.chunk_rows, self._scanner()
        if recycle:
            yield from read_ahead(scanner, rows, self._error)
        else:
            yield from EventStream(scanner, rows, 2 * rows + 1024, self._error)
        self._count_damage(scanner.status())

    def _scanner(self) -> _perfscan.Scanner:
        return self._opened.scanner()

    def _count_damage(self, status: dict[str, Any]) -> None:
        """What a pass counted; a cut-off file ends where it is complete."""
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
