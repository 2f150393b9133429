"""The HEADER_TRACING_DATA section of perf.data: the recording kernel's sched formats.

The section (tools/perf/util/trace-event-read.c) carries the tracepoint format
files of the kernel that recorded, so raw sample fields are decoded with that
kernel's offsets, and its saved cmdlines.  A file without it falls back to this
host's tracefs formats (:func:`host_formats`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from runstate.sources.linux.schedkinds import SchedKind
from runstate.sources.linux.tpformat import EventFormat, FormatError, parse_format

#: the tracepoints read, by name
SCHED_KINDS = {"sched_switch": SchedKind.SWITCH, "sched_wakeup": SchedKind.WAKEUP,
               "sched_wakeup_new": SchedKind.WAKEUP_NEW, "sched_process_exit": SchedKind.EXIT,
               "sched_process_fork": SchedKind.FORK,
               # timer:hrtimer_expire_entry: its common_pid is the task its CPU runs
               "hrtimer_expire_entry": SchedKind.SEEN}
#: the system of each tracepoint read that is not in ``sched``
OTHER_SYSTEMS = {"hrtimer_expire_entry": "timer"}
#: the tracepoint systems whose formats are read
READ_SYSTEMS = ("sched", *OTHER_SYSTEMS.values())


class TracingDataError(Exception):
    """The section is malformed at ``offset`` (from the section's start)."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


@dataclass(slots=True)
class TracingData:
    """What the section gives: sched formats by event id, and comms by pid."""

    formats: dict[int, EventFormat] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise TracingDataError("section ends early", self.pos)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def cstr(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise TracingDataError("unterminated string", self.pos)
        text = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return text


def parse_tracing_data(data: bytes) -> TracingData:
    """HEADER_TRACING_DATA: the recording kernel's tracepoint format files.

    Raises:
        TracingDataError: the section is malformed (also ``struct.error``,
            ``UnicodeDecodeError`` and ``FormatError`` from the format parser).
    """
    found = TracingData()
    c = _Cursor(data)
    if c.take(10) != b"\x17\x08\x44tracing":
        raise TracingDataError("no tracing magic", 0)
    version = c.cstr()
    if c.take(1) != b"\0":
        raise TracingDataError("big-endian tracing data is not supported", c.pos - 1)
    c.take(1 + 4)  # long size, page size
    for expected in ("header_page", "header_event"):
        if c.cstr() != expected:
            raise TracingDataError(f"expected {expected}", c.pos)
        c.take(c.u64())
    for _ in range(c.u32()):          # ftrace's own events
        c.take(c.u64())
    for _ in range(c.u32()):          # event systems
        system = c.cstr()
        for _ in range(c.u32()):
            text = c.take(c.u64()).decode("utf-8", "replace")
            if system in READ_SYSTEMS:
                fmt = parse_format(text, system)
                found.formats[fmt.id] = fmt
    c.take(c.u32())                   # kallsyms
    c.take(c.u32())                   # printk formats
    if version >= "0.6" and c.pos + 8 <= len(data):
        for line in c.take(c.u64()).decode("utf-8", "replace").splitlines():
            pid, _, comm = line.partition(" ")
            if pid.isdigit():
                found.cmdlines[int(pid)] = comm
    return found


def host_formats() -> dict[int, EventFormat]:
    """This host's tracefs formats of the events read, for a file that carries none."""
    formats = {}
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if not os.path.isdir(os.path.join(root, "events", "sched")):
            continue
        for name in SCHED_KINDS:
            system = OTHER_SYSTEMS.get(name, "sched")
            try:
                with open(os.path.join(root, "events", system, name, "format"),
                          encoding="utf-8") as f:
                    fmt = parse_format(f.read(), system)
            except (OSError, FormatError):
                continue
            formats[fmt.id] = fmt
        break
    return formats
