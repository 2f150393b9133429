"""The one list of readers, format detection by content, and ``open_source``.

Readers are listed in one literal tuple, in sniffing order (magic numbers
first, loose text heuristics last).  ``--input-format`` bypasses sniffing.

Every input pays for detection, so a reader is listed by its format, a cheap
test of the content (a sniff module without numpy, a magic number, or being a
directory) and where the reader lives; the reader module itself (numpy, a C
walker) is imported only to open an input of its format.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, cast

from runstate.errors import InputError, UnknownFormat, UsageError
from runstate.sources import formats
from runstate.sources.base import FormatInfo, Reader, ReadOptions, Source


@dataclass(frozen=True, slots=True)
class LazyReader:
    """A reader as the registry knows it before an input of its format turns up."""

    FORMAT: FormatInfo
    #: ``module:attribute`` of the reader object
    reader: str
    #: ``module:function(path, head)`` recognising the content, in a module without numpy
    sniffer: str | None = None
    #: the bytes every input of the format starts with
    magic: bytes = b""
    #: the input is a directory (its head is empty) rather than a file or stream
    directory: bool = False

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
               magic=formats.PERF_DATA_MAGIC),
    LazyReader(formats.XENTRACE, "runstate.sources.xentrace.reader:XENTRACE_READER",
               "runstate.sources.xentrace.sniff:is_xentrace"),
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
        stream = cast(IO[bytes], io.BufferedReader(stdin))
    elif os.path.isdir(path):
        head = b""
    else:
        head = _read_head(path)
    if not head and not os.path.isdir(path):
        raise InputError("stdin" if path == "-" else path,
                         "empty input (no data to read)")
    reader = find_reader(input_format) if input_format else detect(path, head)
    return reader.open(path, stream, options)


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
