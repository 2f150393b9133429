"""The one list of readers, format detection by content, and ``open_source``.

Readers are listed in one literal tuple, in sniffing order (magic numbers
first, loose text heuristics last).  ``--input-format`` bypasses sniffing.
"""

from __future__ import annotations

import io
import os
import sys
from typing import IO, Any, cast

from runstate.errors import InputError, UnknownFormat, UsageError
from runstate.sources.base import Reader, ReadOptions, Source
from runstate.sources.generic import CSV_READER, JSONL_READER
from runstate.sources.linux.ftrace_text import FTRACE_TEXT_READER
from runstate.sources.linux.perfdata import PERF_DATA_READER
from runstate.sources.linux.perfscript import PERF_SCRIPT_READER
from runstate.sources.linux.recording import RECORDING_READER
from runstate.sources.xentrace.reader import XENTRACE_READER

#: every reader, in sniffing order
READERS: tuple[Reader, ...] = (
    XENTRACE_READER,
    RECORDING_READER,
    PERF_DATA_READER,
    PERF_SCRIPT_READER,
    FTRACE_TEXT_READER,
    JSONL_READER,
    CSV_READER,
)

SNIFF_BYTES = 64 * 1024


def reader_names() -> list[str]:
    return [r.FORMAT.name for r in sorted(READERS, key=lambda r: r.FORMAT.priority)]


def find_reader(name: str) -> Reader:
    for reader in READERS:
        if reader.FORMAT.name == name:
            return reader
    raise UsageError(f"unknown input format {name!r}; known: {', '.join(reader_names())}")


def detect(path: str, head: bytes) -> Reader:
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
