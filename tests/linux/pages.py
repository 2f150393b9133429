"""A tiny writer of tracefs ring-buffer pages, for decoder tests with known answers.

It encodes events the way the kernel does (type_len 1..28 or 0 with a length
word, time extends, absolute stamps, padding), so a test states the times and
payloads it wants and checks the decoder gives them back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from runstate.sources.linux.tpformat import EventFormat

MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
MAX_DELTA = (1 << 27) - 1


@dataclass
class PageBuilder:
    page_size: int = 4096
    timestamp: int = 0
    data: bytearray = field(default_factory=bytearray)
    missed: int | None = None  # None: no flag; -1: flag without count; n: stored count

    def _header(self, type_len: int, delta: int) -> bytes:
        assert 0 <= delta <= MAX_DELTA
        return struct.pack("<I", type_len | (delta << 5))

    def event(self, delta: int, payload: bytes, force_long: bool = False) -> None:
        """A data event; a delta too large for 27 bits is preceded by a time extend."""
        if delta > MAX_DELTA:
            self.time_extend(delta)
            delta = 0
        padded = payload + bytes(-len(payload) % 4)
        if len(padded) <= 28 * 4 and not force_long:
            self.data += self._header(len(padded) // 4, delta) + padded
        else:
            self.data += self._header(0, delta) + struct.pack("<I", len(padded) + 4) + padded

    def time_extend(self, delta: int) -> None:
        self.data += self._header(30, delta & MAX_DELTA) + struct.pack("<I", delta >> 27)

    def absolute(self, ts: int) -> None:
        self.data += self._header(31, ts & MAX_DELTA) + struct.pack("<I", (ts >> 27) & 0xFFFFFFFF)

    def padding(self, delta: int, length: int) -> None:
        """A discarded event (padding with a length)."""
        self.data += self._header(29, delta) + struct.pack("<I", length) + bytes(length - 4)

    def bytes(self) -> bytes:
        commit = len(self.data)
        tail = b""
        if self.missed is not None:
            commit |= MISSED_EVENTS
            if self.missed >= 0:
                commit |= MISSED_STORED
                tail = struct.pack("<Q", self.missed)
        page = struct.pack("<QQ", self.timestamp, commit) + bytes(self.data) + tail
        assert len(page) <= self.page_size
        return page + bytes(self.page_size - len(page))


def payload(fmt: EventFormat, **values: int | str) -> bytes:
    """A tracepoint record for ``fmt`` with the given field values (others zero)."""
    size = max(f.offset + f.size for f in fmt.fields.values())
    buf = bytearray(size)
    struct.pack_into("<H", buf, 0, fmt.id)
    for name, value in values.items():
        f = fmt.field(name)
        if isinstance(value, str):
            raw = value.encode()[: f.size - 1]
            buf[f.offset: f.offset + len(raw)] = raw
        else:
            code = {1: "b", 2: "h", 4: "i", 8: "q"}[f.size]
            struct.pack_into("<" + (code if f.signed else code.upper()), buf, f.offset, value)
    return bytes(buf)
