"""Writing xentrace files: records buffered per pcpu and written as windows.

The file layout is what ``xentrace`` produces (docs/xentrace.md, "File layout"):
each window is a ``TRC_TRACE_CPU_CHANGE`` header (pcpu, byte size) followed by
that pcpu's records.  :meth:`XentraceWriter.poll` writes one window for every
pcpu with buffered records, in pcpu order, like one polling round of
xentrace; callers decide when rounds happen, which decides how windows of
different pcpus interleave.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from runstate.sources.xentrace.constants import (
    CPU_CHANGE_HEADER,
    TRC_LOST_RECORDS,
    TRC_SCHED_CONTINUE_RUNNING,
    TRC_TRACE_WRAP_BUFFER,
    header_word,
    runstate_change_event,
)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What a writer has written so far."""

    windows: int
    records: int
    bytes: int


def encode_record(event: int, extra: tuple[int, ...] = (), tsc: int | None = None) -> bytes:
    """One record: header word, optional TSC, up to 7 extra words."""
    if len(extra) > 7:
        raise ValueError("a record carries at most 7 extra words")
    head = struct.pack("<I", header_word(event, len(extra), tsc is not None))
    stamp = b"" if tsc is None else struct.pack("<Q", tsc)
    return head + stamp + struct.pack(f"<{len(extra)}I", *extra)


def runstate_payload(dom: int, vcpu: int) -> int:
    """The scheduler records' data word: vcpu in the low half, domain in the high half."""
    return (dom & 0xFFFF) << 16 | (vcpu & 0xFFFF)


class XentraceWriter:
    """Buffers records per pcpu and writes them as xentrace windows to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._buffers: dict[int, list[bytes]] = {}
        self._pending: dict[int, int] = {}
        self._windows = 0
        self._records = 0
        self._bytes = 0

    # ---- records ------------------------------------------------------------

    def record(self, pcpu: int, data: bytes) -> None:
        """Buffer one already-encoded record for ``pcpu``."""
        if pcpu < 0:
            raise ValueError("pcpu must be >= 0")
        self._buffers.setdefault(pcpu, []).append(data)
        self._pending[pcpu] = self._pending.get(pcpu, 0) + len(data)
        self._records += 1

    def runstate_change(self, pcpu: int, tsc: int, dom: int, vcpu: int, old: int,
                        new: int) -> None:
        """``TRC_SCHED_RUNSTATE_CHANGE``: vCPU ``dom``.``vcpu`` went from ``old`` to ``new``."""
        self.record(pcpu, encode_record(runstate_change_event(old, new),
                                        (runstate_payload(dom, vcpu),), tsc))

    def continue_running(self, pcpu: int, tsc: int, dom: int, vcpu: int) -> None:
        self.record(pcpu, encode_record(TRC_SCHED_CONTINUE_RUNNING,
                                        (runstate_payload(dom, vcpu),), tsc))

    def lost_records(self, pcpu: int, tsc: int, count: int, dom: int, vcpu: int,
                     first_tsc: int) -> None:
        """``TRC_LOST_RECORDS``; note its payload has the domain in the *low* half."""
        ids = (dom & 0xFFFF) | (vcpu & 0xFFFF) << 16
        self.record(pcpu, encode_record(
            TRC_LOST_RECORDS, (count, ids, first_tsc & 0xFFFFFFFF, first_tsc >> 32), tsc))

    def wrap(self, pcpu: int, n_extra: int, tsc: int | None = None) -> None:
        """``TRC_TRACE_WRAP_BUFFER`` padding with garbage extra words."""
        self.record(pcpu, encode_record(TRC_TRACE_WRAP_BUFFER,
                                        tuple(0xDEADBEEF for _ in range(n_extra)), tsc))

    def other(self, pcpu: int, event: int, extra: tuple[int, ...] = (),
              tsc: int | None = None) -> None:
        """Any other record (the reader skips it)."""
        self.record(pcpu, encode_record(event, extra, tsc))

    # ---- windows ------------------------------------------------------------

    def flush(self, pcpu: int) -> None:
        """Write ``pcpu``'s buffered records as one window (nothing if empty)."""
        records = self._buffers.pop(pcpu, None)
        self._pending.pop(pcpu, None)
        if not records:
            return
        body = b"".join(records)
        self._out.write(struct.pack("<IiI", CPU_CHANGE_HEADER, pcpu, len(body)))
        self._out.write(body)
        self._windows += 1
        self._bytes += 12 + len(body)

    def poll(self) -> None:
        """One xentrace polling round: a window per pcpu with data, in pcpu order."""
        for pcpu in sorted(self._buffers):
            self.flush(pcpu)

    def pending(self, pcpu: int) -> int:
        """Bytes buffered for ``pcpu``."""
        return self._pending.get(pcpu, 0)

    def close(self) -> WindowStats:
        """Write what is buffered; the stream itself stays open."""
        self.poll()
        return WindowStats(self._windows, self._records, self._bytes)
