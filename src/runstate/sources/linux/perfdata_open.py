"""Opening a perf.data file, and its names pass, before numpy is loaded (no numpy here).

Opening reads the header and works out how the data section is decoded
(:class:`Opened`); then the names pass starts (``_perfscan``'s
``Scanner.start``): the whole data section, in C, on a thread of its own,
keeping the events while they fit (see :mod:`.perfdata`).  Neither needs
numpy, so a report can start them before it loads the analysis, which takes a
core for a tenth of a second: :func:`prefetch` is the perf.data reader's
prefetcher (``registry.prefetch``), and the reader :func:`claim`\\ s what it
started instead of opening the file again.  A started pass is trusted only
for the very file it read: it is claimed with the same path and options, and
only if the file there is still the one it opened (device, inode, size,
modification and change times); otherwise it is dropped and the reader opens
the file afresh.
"""

from __future__ import annotations

import os

from runstate.errors import InputError, RunstateError
from runstate.sources.base import FileIdentity, ReadOptions, SourceInfo, file_identity
from runstate.sources.linux import _perfscan
from runstate.sources.linux.perfdata_header import Header, read_header, system_wide
from runstate.sources.linux.perfdata_records import RecordDecoder, tracepoint_attrs
from runstate.sources.linux.perfdata_tracing import host_formats
from runstate.sources.linux.schedkinds import NEEDED_EVENTS, RECORD_HINT

#: decoded events are kept in memory for the conversion up to this budget, counted
#: at 29 B an event (the columns take 33): about 3.5 M events, some 115 MB of columns
CACHE_BYTES = 96 << 20
CACHE_EVENTS = CACHE_BYTES // 29
#: the smallest sample a sched event can come from: header, time, cpu, raw size, raw data
MIN_SAMPLE_BYTES = 36


class Opened:
    """A perf.data file's header, notes, and the plan its data section is decoded by.

    Raises:
        InputError: the file cannot be read, or holds nothing runstate can use.
    """

    def __init__(self, path: str, options: ReadOptions) -> None:
        self.path = path
        self.options = options
        self.info = SourceInfo(format="perf-data", path=path)
        try:
            with open(path, "rb") as f:
                self.header: Header = read_header(path, f)
        except OSError as err:
            raise InputError(path, err.strerror or str(err)) from None
        h = self.header
        tp = tracepoint_attrs(h)
        if not tp:
            raise InputError(path, "no tracepoint events in the file; runstate needs "
                             + ", ".join(NEEDED_EVENTS) + "; " + RECORD_HINT)
        self.info.clock = tp[0].clock
        if h.truncated:
            self.info.notes.append("perf.data was not finished (writer killed?): read up to "
                                   "the last whole record")
        if not h.formats:
            h.formats = host_formats()
            if not h.formats:
                raise InputError(path, "the file carries no tracepoint formats (perf "
                                 "killed before it finished writing?) and this host has no "
                                 "tracefs sched formats to use instead")
            self.info.notes.append("the file carries no tracepoint formats; used this "
                                   "host's tracefs formats")
        self.records = RecordDecoder(path, h, options, self.info)
        self.filtered = not system_wide(h.cmdline, h.attrs)
        self.records.n_streams = None if self.filtered else len(tp[0].ids)
        if self.filtered:
            self.info.notes.append("perf recorded only some tasks (no -a): switch-ins by "
                                   "untraced tasks are missing, so running and runnable times "
                                   "are estimates and host idleness is unknown; record with -a")

    def scanner(self) -> _perfscan.Scanner:
        """A C pass over the data section (it keeps a descriptor of the file of its own)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as err:
            raise InputError(self.path, err.strerror or str(err)) from None
        try:
            return self.records.scanner(fd)
        finally:
            os.close(fd)

    def cache_capacity(self, cache_events: int) -> int:
        """Room for every event the data section can hold, up to ``cache_events`` + 1."""
        return min(self.header.data_size // MIN_SAMPLE_BYTES + 1, cache_events + 1)

    def names_pass(self, cache_events: int, guess: bool) -> _perfscan.Scanner:
        """The names pass, started on a thread of its own; with ``guess`` it stops keeping
        events once the data read says they will not fit the cache."""
        scanner = self.scanner()
        scanner.start(self.cache_capacity(cache_events), self.options.chunk_rows, guess)
        return scanner


class _Started:
    """A names pass started ahead of ``open``, and what it was started on.  (A plain
    class: a dataclass costs a millisecond to define, on the way to every report.)"""

    __slots__ = ("opened", "scanner", "identity")

    def __init__(self, opened: Opened, scanner: _perfscan.Scanner, identity: FileIdentity) -> None:
        self.opened = opened
        self.scanner = scanner
        self.identity = identity


#: names passes started and not yet claimed, by path
_started: dict[str, _Started] = {}


def prefetch(path: str, options: ReadOptions, whole: bool) -> None:
    """Open the file at ``path`` and start its names pass (``whole`` changes nothing
    here: the rest of a read needs numpy).  Anything in the way starts nothing: the
    reader meets it again and reports it then."""
    del whole
    _started.pop(path, None)
    try:
        st = os.stat(path)
        opened = Opened(path, options)
        scanner = opened.names_pass(CACHE_EVENTS, guess=True)
    except (RunstateError, OSError, ValueError, MemoryError, RuntimeError):
        return
    _started[path] = _Started(opened, scanner, file_identity(st))


def claim(path: str, options: ReadOptions) -> tuple[Opened, _perfscan.Scanner] | None:
    """The file opened and its names pass started by :func:`prefetch`, if they were for
    this path and these options and the file there is still the one read; else None."""
    started = _started.pop(path, None)
    if started is None or started.opened.options != options:
        return None
    try:
        if file_identity(os.stat(path)) != started.identity:
            return None
    except OSError:
        return None
    return started.opened, started.scanner
