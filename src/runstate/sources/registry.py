"""The one list of readers, format detection by content, and ``open_source``.

Readers are listed in one literal tuple, in sniffing order (magic numbers
first, loose text heuristics last).  ``--input-format`` bypasses sniffing.

Every input pays for detection, so a reader is listed by its format, a cheap
test of the content (a sniff module without numpy, a magic number, or being a
directory) and where the reader lives; the reader module itself (numpy, a C
walker) is imported only to open an input of its format.

A reader may also name a *prefetcher* (see :class:`~runstate.sources.base.Prefetcher`):
:func:`prefetch` starts it on a file as soon as a command knows the file, so
that it reads on other threads while the command loads the analysis.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
from collections.abc import Callable

from runstate.errors import InputError, RunstateError, UnknownFormat, UsageError
from runstate.sources import formats

TYPE_CHECKING = False  # as typing's: a report reaches prefetch() before typing loads
if TYPE_CHECKING:
    from typing import IO, Any

    from runstate.sources.base import Prefetcher, Reader, Source
    from runstate.sources.options import FormatInfo, ReadOptions


class LazyReader:
    """A reader as the registry knows it before an input of its format turns up.

    (A plain class, not a dataclass: a report reaches :func:`prefetch` through this
    module, and the dataclasses module would delay that by milliseconds.)"""

    __slots__ = ("FORMAT", "reader", "sniffer", "magic", "directory", "prefetcher")

    def __init__(self, format_info: FormatInfo, reader: str, sniffer: str | None = None, *,
                 magic: bytes = b"", directory: bool = False,
                 prefetcher: str | None = None) -> None:
        self.FORMAT = format_info
        #: ``module:attribute`` of the reader object
        self.reader = reader
        #: ``module:function(path, head)`` recognising the content, in a module without numpy
        self.sniffer = sniffer
        #: the bytes every input of the format starts with
        self.magic = magic
        #: the input is a directory (its head is empty) rather than a file or stream
        self.directory = directory
        #: ``module:function`` starting to read a file ahead of ``open``, in a module
        #: without numpy (a :class:`~runstate.sources.base.Prefetcher`); None: none
        self.prefetcher = prefetcher

    def __repr__(self) -> str:
        return f"LazyReader({self.FORMAT.name!r}, {self.reader!r})"

    def sniff(self, path: str, head: bytes) -> bool:
        """True if ``head`` (empty for a directory) looks like this format."""
        is_directory = not head  # open_source refuses an empty file or stream
        if self.directory != is_directory or not head.startswith(self.magic):
            return False
        if self.sniffer is None:
            return True
        test: Callable[[str, bytes], bool] = _attribute(self.sniffer)
        return test(path, head)

    def load(self) -> Reader:
        """The reader itself (this imports its module)."""
        reader: Reader = _attribute(self.reader)
        return reader

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions) -> Source:
        return self.load().open(path, stream, options)


def _attribute(where: str) -> Any:
    """``module:name`` -> that object, importing the module on first use."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


#: every reader, in sniffing order
READERS: tuple[LazyReader, ...] = (
    LazyReader(formats.TRACEFS_RECORDING, "runstate.sources.linux.recording:RECORDING_READER",
               "runstate.sources.linux.sniff:is_recording", directory=True),
    LazyReader(formats.PERF_DATA, "runstate.sources.linux.perfdata:PERF_DATA_READER",
               magic=formats.PERF_DATA_MAGIC,
               prefetcher="runstate.sources.linux.perfdata_open:prefetch"),
    LazyReader(formats.XENTRACE, "runstate.sources.xentrace.reader:XENTRACE_READER",
               "runstate.sources.xentrace.sniff:is_xentrace",
               prefetcher="runstate.sources.xentrace.prefetch:prefetch"),
    LazyReader(formats.PERF_SCRIPT, "runstate.sources.linux.perfscript:PERF_SCRIPT_READER",
               "runstate.sources.linux.sniff:is_perf_script"),
    LazyReader(formats.FTRACE_TEXT, "runstate.sources.linux.ftrace_text:FTRACE_TEXT_READER",
               "runstate.sources.linux.sniff:is_ftrace_text"),
    LazyReader(formats.CSV, "runstate.sources.generic:CSV_READER",
               "runstate.sources.generic_sniff:is_csv"),
    LazyReader(formats.JSONL, "runstate.sources.generic:JSONL_READER",
               "runstate.sources.generic_sniff:is_jsonl"),
)

SNIFF_BYTES = 64 * 1024

#: files read ahead: path -> their first bytes and the reader those showed
#: (sniffers decide on the path and those bytes alone: the same bytes need no
#: second sniff)
_sniffed: dict[str, tuple[bytes, LazyReader]] = {}


def reader_names() -> list[str]:
    return [r.FORMAT.name for r in sorted(READERS, key=lambda r: r.FORMAT.priority)]


def find_reader(name: str) -> LazyReader:
    for reader in READERS:
        if reader.FORMAT.name == name:
            return reader
    raise UsageError(f"unknown input format {name!r}; known: {', '.join(reader_names())}")


def detect(path: str, head: bytes) -> LazyReader:
    """The first reader (by priority) whose sniff accepts ``head``."""
    for reader in sorted(READERS, key=lambda r: r.FORMAT.priority):
        if reader.sniff(path, head):
            return reader
    raise UnknownFormat(
        path,
        "unknown input format (known: " + ", ".join(reader_names()) + "; "
        "use --input-format to choose one)",
    )


def open_source(path: str, options: ReadOptions, input_format: str | None = None) -> Source:
    """Open a file, directory or ``-`` (stdin), detecting the format unless given."""
    stream: IO[bytes] | None = None
    if path == "-":
        stdin = _PeekableStdin(sys.stdin.buffer)
        head = stdin.peek_head(SNIFF_BYTES)
        stream = io.BufferedReader(stdin)
    elif os.path.isdir(path):
        head = b""
    else:
        head = _read_head(path)
    if not head and not os.path.isdir(path):
        raise InputError("stdin" if path == "-" else path,
                         "empty input (no data to read)")
    reader = find_reader(input_format) if input_format else _detected(path, head)
    return reader.open(path, stream, options)


def _detected(path: str, head: bytes) -> LazyReader:
    """detect(), or what it said of the same bytes when the file was read ahead."""
    seen = _sniffed.get(path)
    return seen[1] if seen is not None and seen[0] == head else detect(path, head)


def prefetch(path: str, options: ReadOptions, input_format: str | None = None, *,
             whole: bool = False) -> None:
    """Let the reader of the file at ``path`` start reading it ahead of :func:`open_source`
    (``whole``: the analysis will account the whole trace, as one run), if its reader
    has a prefetcher.

    A command calls this as soon as it knows its input, before it loads the analysis;
    what gets in the way (no such file, an unknown format) is left for
    :func:`open_source` to report.  Stdin and directories are not read ahead.
    """
    if path == "-" or os.path.isdir(path):
        return
    try:
        head = _read_head(path)
        reader = find_reader(input_format) if input_format else detect(path, head)
    except RunstateError:
        return
    if not input_format:
        _sniffed[path] = (head, reader)
    if head and reader.prefetcher is not None:
        start: Prefetcher = _attribute(reader.prefetcher)
        start(path, options, whole)


def _read_head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except IsADirectoryError:
        return b""
    except OSError as err:
        raise InputError(path, err.strerror or str(err)) from None


class _PeekableStdin(io.RawIOBase):
    """Stdin that lets the registry look at the first bytes without losing them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buffered = b""

    def peek_head(self, n: int) -> bytes:
        while len(self._buffered) < n:
            chunk = self._raw.read(n - len(self._buffered))
            if not chunk:
                break
            self._buffered += chunk
        return self._buffered

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._buffered:
            n = min(len(view), len(self._buffered))
            view[:n] = self._buffered[:n]
            self._buffered = self._buffered[n:]
            return n
        data = self._raw.read1(len(view)) if hasattr(self._raw, "read1") else \
            self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)
