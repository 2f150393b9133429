"""Synthetic perf.data files: a recorded file's header, formats and features around new records.

``pinned2.perf.data`` (``perf record -a`` of the five sched tracepoints on 2
CPUs, samples with IDENTIFIER, IP, TID, TIME, CPU, PERIOD and RAW, a
sample_id trailer on other records) lends everything but its data section;
:class:`PerfDataWriter` writes records in that layout and puts them in its
place (the feature table, which follows the data, moves with it).
"""

from __future__ import annotations

import struct
from pathlib import Path

from runstate.sources.linux.perfdata_header import read_header
from tests.conftest import DATA

from .pages import payload

TEMPLATE = DATA / "linux" / "pinned2.perf.data"
REC_LOST, REC_COMM, REC_SAMPLE, REC_LOST_SAMPLES, REC_FINISHED_ROUND = 2, 3, 9, 13, 68
#: SchedKind -> tracepoint name
KIND_NAMES = ("sched_switch", "sched_wakeup", "sched_wakeup_new", "sched_process_exit",
              "sched_process_fork")


class PerfDataWriter:
    """Records in the template's layout, and the file around them."""

    def __init__(self, template: Path = TEMPLATE) -> None:
        self._blob = template.read_bytes()
        with open(template, "rb") as f:
            header = read_header(str(template), f)
        self._formats = {fmt.name: fmt for fmt in header.formats.values()}
        # the sample id perf gave each tracepoint on each CPU
        self._ids = {a.config: a.ids for a in header.attrs}
        self._d_off, self._d_size = header.data_offset, header.data_size

    def sample(self, kind: int, time: int, cpu: int, pid: int, other: int = -1,
               prev_state: int = 0, actor: int = 0) -> bytes:
        """One sched tracepoint sample, its fields as a reader decodes them."""
        fmt = self._formats[KIND_NAMES[kind]]
        if kind == 0:
            values = {"prev_pid": pid, "next_pid": other, "prev_state": prev_state,
                      "prev_comm": f"t{pid}", "next_comm": f"t{other}"}
        elif kind == 4:
            values = {"child_pid": pid, "parent_pid": other}
        else:
            values = {"pid": pid}
        raw = payload(fmt, common_pid=actor, **values)
        raw += bytes((4 - len(raw)) % 8)  # the u32 size and the data end on 8 bytes
        ident = self._ids[fmt.id][cpu % len(self._ids[fmt.id])]
        body = struct.pack("<QQIIQIIQI", ident, 0, actor, actor, time, cpu, 0, 1, len(raw)) + raw
        return struct.pack("<IHH", REC_SAMPLE, 0, 8 + len(body)) + body

    def _trailer(self, time: int, cpu: int) -> bytes:
        """The sample_id fields that end non-sample records: TID, TIME, CPU, IDENTIFIER."""
        return struct.pack("<IIQIIQ", 0, 0, time, cpu, 0, 0)

    def lost(self, time: int, cpu: int, count: int) -> bytes:
        """A LOST record: ``count`` samples dropped on ``cpu``, written at ``time``."""
        body = struct.pack("<QQ", 0, count) + self._trailer(time, cpu)
        return struct.pack("<IHH", REC_LOST, 0, 8 + len(body)) + body

    def lost_samples(self, count: int) -> bytes:
        """perf's end-of-run LOST_SAMPLES summary (no time)."""
        body = struct.pack("<Q", count) + self._trailer(0, 0)
        return struct.pack("<IHH", REC_LOST_SAMPLES, 0, 8 + len(body)) + body

    def comm(self, pid: int, tid: int, name: str, time: int, cpu: int) -> bytes:
        text = name.encode()[:15] + b"\0"
        text += bytes(-len(text) % 8)
        body = struct.pack("<II", pid, tid) + text + self._trailer(time, cpu)
        return struct.pack("<IHH", REC_COMM, 0, 8 + len(body)) + body

    @staticmethod
    def finished_round() -> bytes:
        return struct.pack("<IHH", REC_FINISHED_ROUND, 0, 8)

    def file(self, records: list[bytes]) -> bytes:
        """The template with ``records`` as its data section."""
        data = b"".join(records)
        delta = len(data) - self._d_size
        head = bytearray(self._blob[:self._d_off])
        struct.pack_into("<Q", head, 48, len(data))
        tail = bytearray(self._blob[self._d_off + self._d_size:])
        features = int.from_bytes(self._blob[72:104], "little")
        for i in range(bin(features).count("1")):
            offset = struct.unpack_from("<Q", tail, 16 * i)[0]
            struct.pack_into("<Q", tail, 16 * i, offset + delta)
        return bytes(head) + data + bytes(tail)
