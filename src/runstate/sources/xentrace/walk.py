"""Turning a xentrace file or stream into columns of decoded records, in file order.

The C walker (``_walk``) does the byte work; this module owns the buffers, the
window index used to merge pcpu streams, and the translation of walker errors
into one-line :class:`~runstate.errors.InputError` messages.  Semantics (what a
record means for a vCPU) live in ``reader`` and ``analysis.xenalyze``.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import IO

import numpy as np
import numpy.typing as npt

from runstate._abi import check_constants, check_kernel
from runstate.errors import InputError
from runstate.model.states import LOSS_BEGIN, LOSS_END
from runstate.sources.xentrace import _walk
from runstate.sources.xentrace.constants import MAX_PCPUS, MAX_WINDOW_BYTES

# cursor slots and walk status (the walker defines the cursor's layout)
C_OFF, C_WEND, C_PCPU, C_STATUS = _walk.C_OFF, _walk.C_WEND, _walk.C_PCPU, _walk.C_STATUS
C_ERR_OFF, C_ERR_CODE = _walk.C_ERR_OFF, _walk.C_ERR_CODE
C_ERR_WORD, C_ERR_AUX = _walk.C_ERR_WORD, _walk.C_ERR_AUX
ST_FULL, ST_MORE, ST_ERROR = _walk.ST_FULL, _walk.ST_MORE, _walk.ST_ERROR

#: bytes read from a stream at a time (less if less is available: read1)
STREAM_READ = 1 << 20


class Kind(IntEnum):
    """What a decoded row is (``kind`` column)."""

    CHANGE = 0
    CONTINUE = 1
    LOST = 2
    WRAP = 3
    OTHER = 4


class Stat(IntEnum):
    """Counters the walker keeps (indices into ``Walker.stats``)."""

    WINDOWS = 0
    CHANGE = 1
    CONTINUE = 2
    LOST = 3
    LOST_COUNT = 4
    WRAP = 5
    OTHER = 6
    BAD = 7
    RESYNC = 8
    FIRST_TSC = 9
    LAST_TSC = 10
    RECORDS = 11
    #: window headers whose pcpu is not above the previous one's: new polling rounds
    ROUNDS = 12
    PREV_PCPU = 13


_ERRORS = {
    1: "window header is not a TRC_TRACE_CPU_CHANGE record (0x2001f003)",
    2: "impossible pcpu number in a window header",
    3: "impossible window size in a window header",
    4: "record class is not one-hot",
    5: "record runs past the end of its window",
    6: "TRC_LOST_RECORDS whose TSC is not after its first_tsc",
    7: "TRC_SCHED_RUNSTATE_CHANGE with a state above 3",
    8: "TSC goes backwards within a pcpu's records",
    9: "TRC_LOST_RECORDS without TSC or without its 4 data words",
    10: "scheduler record without TSC or without its data word",
}


@dataclass(frozen=True, slots=True)
class Records:
    """Decoded records of one chunk, in file order (one pcpu's rows are time-sorted)."""

    tsc: npt.NDArray[np.int64]
    #: packed: bits 0-31 ids (runstate/continue/lost: dom << 16 | vcpu, for lost
    #: the payload's vCPU; other: the event id), 32-39 kind, 40-47 old, 48-55 new
    key: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int8]
    old: npt.NDArray[np.int8]
    new: npt.NDArray[np.int8]
    #: lost: first_tsc
    aux: npt.NDArray[np.int64]
    pcpu: npt.NDArray[np.int16]
    #: byte offset of the record
    off: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.tsc.shape[0])


#: ``Records.key & IDS_MASK``: the ids part of the packed key
IDS_MASK = 0xFFFFFFFF
#: ids of a loss marker row; a marker is told by its flag, not by these ids,
#: which a real vCPU (domain 65535, vCPU 65535) may also carry
MARKER_IDS = 0xFFFFFFFF


def packed_marker(flag: int) -> int:
    """Packed key of a loss marker row (flag/new = LOSS_BEGIN or LOSS_END)."""
    return MARKER_IDS | flag << 32 | flag << 48


def is_marker(packed: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which packed keys are loss markers (flag LOSS_BEGIN or LOSS_END)."""
    flag = (packed >> 32) & 0xFF
    marker: npt.NDArray[np.bool_] = (flag == LOSS_BEGIN) | (flag == LOSS_END)
    return marker


check_kernel(_walk)
check_constants(_walk, {
    "MAX_PCPUS": MAX_PCPUS, "MAX_WINDOW": MAX_WINDOW_BYTES,
    "R_LOSS_BEGIN": LOSS_BEGIN, "R_LOSS_END": LOSS_END,
    **{f"K_{kind.name}": int(kind) for kind in Kind},
    **{f"S_{stat.name}": int(stat) for stat in Stat},
})


def _columns(cap: int) -> tuple[npt.NDArray[np.generic], ...]:
    return (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int8),
            np.empty(cap, np.int8), np.empty(cap, np.int8), np.empty(cap, np.int64),
            np.empty(cap, np.int16), np.empty(cap, np.int64))


def describe_error(path: str, cursor: npt.NDArray[np.int64]) -> InputError:
    """The one-line error for the walker's error slots."""
    code = int(cursor[C_ERR_CODE])
    word, aux = int(cursor[C_ERR_WORD]), int(cursor[C_ERR_AUX])
    reason = _ERRORS.get(code, f"walker error {code}")
    record: str
    if code == 1:
        record = f"header word 0x{word & 0xFFFFFFFF:08x}"
    elif code == 2:
        record = f"pcpu {aux}"
    elif code == 3:
        record = f"window size {aux} bytes (must be a multiple of 4, at most 1 GiB)"
    elif code == 6:
        record = f"TSC {word}, first_tsc {aux}"
    elif code == 8:
        record = f"event 0x{word & 0x0FFFFFFF:07x}; previous TSC on this pcpu {aux}"
    else:
        record = (f"event 0x{word & 0x0FFFFFFF:07x}, {(word >> 28) & 7} data words, "
                  f"TSC {'yes' if (word >> 31) & 1 else 'no'}")
        if code == 5:
            record += f", {aux} bytes left in the window"
    return InputError(path, reason, offset=int(cursor[C_ERR_OFF]), record=record)


def map_file(path: str) -> mmap.mmap:
    """The file mapped read-only (an empty or unreadable file is an InputError)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise InputError(path, err.strerror or str(err)) from None
    try:
        if os.fstat(fd).st_size == 0:
            raise InputError(path, "empty file")
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError as err:
        raise InputError(path, err.strerror or str(err)) from None
    finally:
        os.close(fd)


def release_pages(data: mmap.mmap, start: int, upto: int) -> int:
    """Drop the mapped pages before ``upto`` from this process's resident set.

    The file stays mapped; the pages are file cache and come back on access.
    Without this, the resident size grows with the file even though the
    reader only looks at each byte once.  Returns the new start."""
    end = upto - upto % mmap.PAGESIZE
    if end > start and hasattr(data, "madvise"):
        data.madvise(mmap.MADV_DONTNEED, start, end - start)
        return end
    return start


@dataclass(slots=True)
class PcpuIndex:
    """Per pcpu, from the window headers: where its data ends and its first timestamp."""

    last_end: dict[int, int]
    first_tsc: dict[int, int]


class Walker:
    """Decodes a xentrace file (mmap) or stream chunk by chunk.

    Args:
        path: file path, or ``-`` with ``stream``.
        stream: binary stream to read incrementally (stdin), or None.
        lenient: skip and count corrupt records instead of raising.
        other_rows: also emit a row for every record the reader does not
            interpret (xenalyze emulation needs their timestamps).
        chunk_rows: rows per chunk.
    """

    def __init__(self, path: str, stream: IO[bytes] | None, *, lenient: bool = False,
                 other_rows: bool = False, chunk_rows: int = 1 << 18) -> None:
        self.path = path
        self.stream = stream
        self.flags = (1 if lenient else 0) | (2 if other_rows else 0)
        self.chunk_rows = max(1024, chunk_rows)
        self.cursor = np.zeros(_walk.N_CURSOR, np.int64)
        self.cursor[C_WEND] = -1
        self.stats = np.zeros(_walk.N_STATS, np.int64)
        self.stats[Stat.FIRST_TSC] = -1
        self.stats[Stat.LAST_TSC] = -1
        #: last TSC seen per pcpu (-1: none yet)
        self.pcpu_tsc = np.full(MAX_PCPUS, -1, np.int64)
        #: stream mode: number of the window in which each pcpu was last seen
        self.truncated_at: int | None = None
        self.size: int | None = None

    @property
    def position(self) -> int:
        """Absolute offset of the next byte the walker will read."""
        return int(self.cursor[C_OFF])

    @property
    def current_pcpu(self) -> int | None:
        return int(self.cursor[C_PCPU]) if int(self.cursor[C_WEND]) >= 0 else None

    def chunks(self) -> Iterator[Records]:
        """Yield decoded chunks until the end of the input."""
        if self.stream is not None:
            yield from self._stream_chunks(self.stream)
            return
        with self._map() as data:
            done = 0
            for rec in self._decode_all(data, 0, True):
                yield rec
                done = release_pages(data, done, self.position)


    def index(self) -> PcpuIndex:
        """Scan the window headers of a file (not a stream): where each pcpu's data ends."""
        last_end: dict[int, int] = {}
        first: dict[int, int] = {}
        with self._map() as data:
            cur = np.zeros(_walk.N_CURSOR, np.int64)
            cur[C_WEND] = -1
            released = 0
            cap = 256  # windows per call, so mapped pages can be released as we go
            offs, pcpus, firsts = np.empty(cap, np.int64), np.empty(cap, np.int32), \
                np.empty(cap, np.int64)
            while True:
                n = _walk.index(data, 0, cur, offs, pcpus, firsts, self.flags & 1)
                if int(cur[C_STATUS]) == ST_ERROR:
                    raise describe_error(self.path, cur)
                self._index_rows(offs[:n], pcpus[:n], firsts[:n], last_end, first)
                released = release_pages(data, released, int(cur[C_OFF]))
                if int(cur[C_STATUS]) != ST_FULL:
                    return PcpuIndex(last_end, first)

    @staticmethod
    def _index_rows(ends: npt.NDArray[np.int64], pcpus: npt.NDArray[np.int32],
                    firsts: npt.NDArray[np.int64], last_end: dict[int, int],
                    first: dict[int, int]) -> None:
        for p, e, f in zip(pcpus.tolist(), ends.tolist(), firsts.tolist(), strict=True):
            last_end[p] = e
            if p not in first and f >= 0:
                first[p] = f

    def _map(self) -> mmap.mmap:
        data = map_file(self.path)
        self.size = len(data)
        return data

    def _decode_all(self, data: bytes | bytearray | mmap.mmap, base: int,
                    at_eof: bool) -> Iterator[Records]:
        """Decode everything decodable in ``data`` (absolute offsets from ``base``)."""
        while True:
            cols = _columns(self.chunk_rows)
            n = _walk.decode(data, base, -1, self.cursor, self.stats, self.pcpu_tsc, cols,
                             self.flags)
            status = int(self.cursor[C_STATUS])
            if status == ST_ERROR:
                raise describe_error(self.path, self.cursor)
            if n:
                yield Records(*(c[:n] for c in cols))  # type: ignore[arg-type]
            if status == ST_MORE:
                inside = int(self.cursor[C_WEND]) > self.position
                if at_eof and (self.position < base + len(data) or inside):
                    self.truncated_at = self.position
                return

    def _stream_chunks(self, stream: IO[bytes]) -> Iterator[Records]:
        buf = bytearray()
        base = 0
        read = getattr(stream, "read1", stream.read)
        while True:
            try:
                more = read(STREAM_READ)
            except OSError as err:
                raise InputError(self.path, err.strerror or str(err)) from None
            eof = not more
            buf += more
            yield from self._decode_all(buf, base, eof)
            drop = self.position - base
            if drop > 0:
                del buf[:drop]
                base += drop
            if eof:
                if base == 0 and not buf and self.stats[Stat.WINDOWS] == 0:
                    raise InputError(self.path, "empty input")
                return
