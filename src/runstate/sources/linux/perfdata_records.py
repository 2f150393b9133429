"""The data section of perf.data: record walking and sample, side-band and loss decoding.

The C walker ``_perfwalk`` finds record boundaries in 8 MiB blocks; sample
fields are then gathered with numpy at the offsets the sample layout
(``sample_type``) and the recording kernel's tracepoint formats give.  COMM and
FORK records name threads and give thread groups; LOST and LOST_SAMPLES records
become :class:`~runstate.sources.linux.sched.LostEvents`.  Damage is an
InputError with the byte offset (``--lenient`` skips and counts malformed
samples; so does a file whose writer was killed).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runstate._abi import check_kernel
from runstate.errors import InputError
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux import _perfwalk
from runstate.sources.linux.perfdata_header import HEADER_SIZE, PERF_TYPE_TRACEPOINT, Attr, Header
from runstate.sources.linux.perfdata_tracing import SCHED_KINDS
from runstate.sources.linux.sched import NEEDED_EVENTS, RECORD_HINT, LostEvents
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames
from runstate.sources.linux.tpformat import EventFormat

check_kernel(_perfwalk)

BLOCK = 8 << 20

# record types
REC_LOST, REC_COMM, REC_EXIT, REC_FORK, REC_SAMPLE, REC_LOST_SAMPLES = 2, 3, 4, 7, 9, 13
REC_FINISHED_ROUND, REC_COMPRESSED = 68, 81
# sample_type bits
S_IP, S_TID, S_TIME, S_ADDR, S_READ, S_CALLCHAIN, S_ID, S_CPU = 1, 2, 4, 8, 16, 32, 64, 128
S_PERIOD, S_STREAM_ID, S_RAW, S_IDENTIFIER = 256, 512, 1024, 1 << 16

#: one block of whole records: (bytes, record offsets, record types, file offset of the block)
Block = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.uint32], int]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the fixed fields sit in a sample body (bytes after the 8-byte header)."""

    time: int
    cpu: int
    #: the sample id (IDENTIFIER, else ID), or -1
    id: int
    before_callchain: int
    callchain: bool

    @classmethod
    def of(cls, sample_type: int, read_format: int) -> Layout:
        pos, time, cpu, ident = 0, -1, -1, -1
        for bit in (S_IDENTIFIER, S_IP, S_TID, S_TIME, S_ADDR, S_ID, S_STREAM_ID, S_CPU,
                    S_PERIOD):
            if sample_type & bit:
                if bit == S_TIME:
                    time = pos
                elif bit == S_CPU:
                    cpu = pos
                elif bit in (S_IDENTIFIER, S_ID) and ident < 0:
                    ident = pos
                pos += 8
        if sample_type & S_READ:
            if read_format & 8:
                raise ValueError("grouped read values in samples are not supported")
            pos += 8 * (1 + bin(read_format & 0x17).count("1"))
        return cls(time, cpu, ident, pos, bool(sample_type & S_CALLCHAIN))


def _gather(buf: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], dtype: str
            ) -> npt.NDArray[np.int64]:
    """Values of ``dtype`` at byte offsets ``at``.

    perf pads records to 8 bytes, so a field's offset modulo its size is
    nearly always one value: then one strided view of the buffer serves all
    records; otherwise the bytes are gathered one by one.
    """
    dt = np.dtype(dtype)
    size = dt.itemsize
    if at.size == 0:
        return np.zeros(0, np.int64)
    rem = at % size
    r = int(rem[0])
    if np.all(rem == r):
        view = np.frombuffer(buf, dt, count=(buf.shape[0] - r) // size, offset=r)
        out: npt.NDArray[np.int64] = view[(at - r) // size].astype(np.int64)
        return out
    raw = buf[at[:, None] + np.arange(size)].copy()
    gathered: npt.NDArray[np.int64] = raw.view(dt).ravel().astype(np.int64)
    return gathered


def _u64(buf: npt.NDArray[np.uint8], at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return _gather(buf, at, "<i8")


def _u32(buf: npt.NDArray[np.uint8], at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return _gather(buf, at, "<u4")


def _field(buf: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], size: int,
           signed: bool) -> npt.NDArray[np.int64]:
    if size not in (1, 2, 4, 8):
        raise ValueError(f"field size {size}")
    kind = "i" if signed or size == 8 else "u"
    return _gather(buf, at, f"<{kind}{size}")


def tracepoint_attrs(header: Header) -> list[Attr]:
    """The attrs of tracepoint events that carry raw sample data."""
    return [a for a in header.attrs if a.type == PERF_TYPE_TRACEPOINT and a.sample_type & S_RAW]


class RecordDecoder:
    """Walks the data section of one perf.data file and decodes its records.

    Args:
        path: the file.
        header: its header, with the sched formats to decode samples with.
        options: ``lenient`` skips malformed samples.
        info: receives anomaly counts.

    Raises:
        InputError: no sched_switch samples, or a sample layout that is not supported.
    """

    def __init__(self, path: str, header: Header, options: ReadOptions,
                 info: SourceInfo) -> None:
        self.path = path
        self.header = header
        self._options = options
        self.info = info
        #: names being completed during the scan (switches name threads no COMM named)
        self.naming: TaskNames | None = None
        tp = tracepoint_attrs(header)
        self._formats, present = self._sched_formats(tp)
        self._id_of_kind = {int(SCHED_KINDS[fmt.name]): fid
                            for fid, fmt in self._formats.items() if fid in present}
        self._sample_id: dict[int, Attr] = {i: a for a in header.attrs for i in a.ids}
        self._layout = self._sample_layout(tp)
        self._trailer = _trailer_layout(tp[0].sample_type) if tp[0].sample_id_all else None
        self._multi = len(header.attrs) > 1

    def _sched_formats(self, tp: list[Attr]) -> tuple[dict[int, EventFormat], set[int]]:
        """The sched formats read, and the event ids recorded (refused without switches)."""
        wanted = {fid: fmt for fid, fmt in self.header.formats.items()
                  if fmt.name in SCHED_KINDS}
        present = {a.config for a in tp}
        names = {wanted[c].name for c in present if c in wanted}
        if "sched_switch" not in names:
            have = ", ".join(sorted(f"sched:{n}" for n in names)) or "none"
            raise InputError(self.path, f"no sched tracepoint samples (sched events in file: "
                             f"{have}); runstate needs {', '.join(NEEDED_EVENTS)}; "
                             + RECORD_HINT)
        return wanted, present

    def _sample_layout(self, tp: list[Attr]) -> Layout:
        types = {(a.sample_type, a.read_format) for a in tp}
        if len(types) != 1:
            raise InputError(self.path, "tracepoint events recorded with different sample "
                             "layouts are not supported", offset=HEADER_SIZE)
        sample_type, read_format = types.pop()
        if not sample_type & S_TIME or not sample_type & S_CPU:
            raise InputError(self.path, "samples lack time or cpu (record with perf record -a)")
        try:
            return Layout.of(sample_type, read_format)
        except ValueError as err:
            raise InputError(self.path, str(err), offset=HEADER_SIZE) from None

    # ---- records ---------------------------------------------------------------

    def blocks(self) -> Iterator[Block]:
        """Blocks of whole records: (bytes, offsets, types, file offset of the block)."""
        h = self.header
        end = h.data_offset + h.data_size
        pos = h.data_offset
        carry = b""
        with open(self.path, "rb") as f:
            f.seek(pos)
            while pos < end or carry:
                chunk = f.read(min(BLOCK, end - pos)) if pos < end else b""
                block_start = pos - len(carry)
                pos += len(chunk)
                buf = carry + chunk if carry else chunk
                if not buf:
                    break
                n_max = len(buf) // 8 + 1
                offs = np.empty(n_max, np.int64)
                types = np.empty(n_max, np.uint32)
                n, nxt, status = _perfwalk.walk(buf, 0, offs, types)
                if status < 0:
                    raise InputError(self.path, "bad record size (damaged file)",
                                     offset=block_start + nxt)
                carry = buf[nxt:]
                yield np.frombuffer(buf, np.uint8), offs[:n], types[:n], block_start
                if not chunk:
                    if carry:
                        self._tail(block_start + nxt, len(carry))
                    break

    def _tail(self, offset: int, n: int) -> None:
        if self.header.truncated:
            self.info.count("truncated_tail_bytes", n)
            return
        raise InputError(self.path, f"data section ends inside a record ({n} bytes left)",
                         offset=offset)

    # ---- samples ---------------------------------------------------------------

    def samples(self, buf: npt.NDArray[np.uint8], offs: npt.NDArray[np.int64]
                ) -> tuple[SchedEvents, npt.NDArray[np.int64]]:
        """The sched events of the SAMPLE records at ``offs``, and their record offsets."""
        lay = self._layout
        body = offs + 8
        end = offs + _field(buf, offs + 6, 2, False)
        ok = body + lay.before_callchain + 4 <= end
        if lay.callchain:
            ok &= body + lay.before_callchain + 8 <= end
        body, offs, end = body[ok], offs[ok], end[ok]
        bad = int(ok.size - np.count_nonzero(ok))
        if self._multi and offs.size and lay.id >= 0:
            ids = _u64(buf, body + lay.id)
            keep = np.isin(ids, np.array(list(self._raw_ids()), dtype=np.int64))
            body, offs, end = body[keep], offs[keep], end[keep]
        raw_at = body + lay.before_callchain
        if lay.callchain:
            nr = _u64(buf, raw_at)
            fits = (nr >= 0) & (nr < 1 << 16)
            raw_at = raw_at + 8 + 8 * np.where(fits, nr, 1 << 40)
        fits = raw_at + 4 <= end
        raw_at = np.where(fits, raw_at, body)
        fits &= raw_at + 4 + _u32(buf, raw_at) <= end
        fits &= _u32(buf, raw_at) >= 8
        bad += int(fits.size - np.count_nonzero(fits))
        body, offs, end, raw_at = body[fits], offs[fits], end[fits], raw_at[fits]
        raw = raw_at + 4
        raw_end = raw + _u32(buf, raw_at)
        time = _u64(buf, body + lay.time)
        cpu = _u32(buf, body + lay.cpu)
        etype = _field(buf, raw, 2, False)
        parts = []
        pos_parts = []
        for kind, fid in self._id_of_kind.items():
            sel = np.flatnonzero(etype == fid)
            need = max(f.offset + f.size for f in self._formats[fid].fields.values())
            short = raw[sel] + need > raw_end[sel]
            if short.any():
                bad += int(np.count_nonzero(short))
                sel = sel[~short]
            if sel.size == 0:
                continue
            parts.append(self._fields(buf, raw[sel], kind, self._formats[fid], time[sel],
                                      cpu[sel]))
            pos_parts.append(offs[sel])
        if bad:
            self._bad_samples(bad, int(offs[0]) if offs.size else 0)
        if not parts:
            return SchedEvents.concat([]), np.zeros(0, np.int64)
        return SchedEvents.concat(parts), np.concatenate(pos_parts)

    def _bad_samples(self, n: int, near: int) -> None:
        """Samples too short for their declared layout: a damaged file."""
        if self._options.lenient or self.header.truncated:
            self.info.count("malformed_samples", n)
            return
        raise InputError(self.path, f"{n} sample records too short for their layout "
                         "(damaged file; --lenient skips them)", offset=near)

    def _raw_ids(self) -> set[int]:
        return {i for i, a in self._sample_id.items()
                if a.type == PERF_TYPE_TRACEPOINT and a.config in self._formats}

    def _fields(self, buf: npt.NDArray[np.uint8], raw: npt.NDArray[np.int64], kind: int,
                fmt: EventFormat, time: npt.NDArray[np.int64], cpu: npt.NDArray[np.int64]
                ) -> SchedEvents:
        def get(name: str) -> npt.NDArray[np.int64]:
            fld = fmt.field(name)
            return _field(buf, raw + fld.offset, fld.size, fld.signed)

        n = raw.shape[0]
        minus = np.full(n, -1, np.int64)
        zero = np.zeros(n, np.int64)
        try:
            if kind == SchedKind.SWITCH:
                pid, other, state = get("prev_pid"), get("next_pid"), get("prev_state")
                if self.naming is not None:
                    self._name_from_raw(buf, raw, pid, fmt, "prev_comm")
                    self._name_from_raw(buf, raw, other, fmt, "next_comm")
            elif kind == SchedKind.FORK:
                pid, other, state = get("child_pid"), get("parent_pid"), zero
            else:
                pid, other, state = get("pid"), minus, zero
        except (KeyError, ValueError) as err:
            raise InputError(self.path, f"unknown tracepoint format: {err.args[0]}") from None
        # common_pid: the task current on the CPU (evidence for a dropped switch)
        actor = get("common_pid") if "common_pid" in fmt.fields else minus
        return SchedEvents.from_columns(time, cpu, np.full(n, kind, np.int8), pid, other,
                                        state, actor)

    # ---- side band and losses --------------------------------------------------

    def side_band(self, buf: npt.NDArray[np.uint8], o: int, kind: int, seq: int
                   ) -> SideBand | None:
        """Decode a COMM (name) or FORK (thread group) record."""
        size = int(buf[o + 6]) | int(buf[o + 7]) << 8
        body = bytes(buf[o + 8:o + size])
        if kind == REC_COMM and len(body) > 8:
            pid, tid = struct.unpack_from("<II", body)
            comm = body[8:].split(b"\0", 1)[0].decode("utf-8", "replace")
            t = 0
            if self._trailer is not None and self._trailer[0]:
                t = int(struct.unpack_from("<q", body, len(body) - self._trailer[0])[0])
            return SideBand(t, seq, kind, tid, pid, -1, comm)
        if kind == REC_FORK and len(body) >= 24:
            pid, _, tid, ptid, t = struct.unpack_from("<IIIIq", body)
            return SideBand(t, seq, kind, tid, pid, ptid, "")
        return None

    def _name_from_raw(self, buf: npt.NDArray[np.uint8], raw: npt.NDArray[np.int64],
                       pids: npt.NDArray[np.int64], fmt: EventFormat, field_name: str) -> None:
        """Name threads no COMM record named (started before perf, never exec'd)."""
        names = self.naming
        fld = fmt.fields.get(field_name)
        if names is None or fld is None or fld.data_loc or fld.size > 64:
            return
        known = np.fromiter(names.comm, np.int64, count=len(names.comm))
        missing = ~np.isin(pids, known) & (pids > 0)
        if not missing.any():
            return
        unique, first = np.unique(pids[missing], return_index=True)
        at = raw[missing][first] + fld.offset
        for pid, pos in zip(unique.tolist(), at.tolist(), strict=True):
            text = bytes(buf[pos:pos + fld.size]).split(b"\0", 1)[0]
            names.comm[pid] = text.decode("utf-8", "replace")

    def lost(self, buf: npt.NDArray[np.uint8], o: int, count_at: int) -> LostEvents:
        """A LOST (count at +16) or LOST_SAMPLES (count at +8) record."""
        size = int(_u32(buf, np.array([o + 4]))[0]) >> 16
        count = int(_u64(buf, np.array([o + count_at]))[0]) if size >= count_at + 8 else None
        t, cpu = -1, 0
        if self._trailer is not None:
            t_at, cpu_at = self._trailer
            end = o + size
            if t_at:
                t = int(_u64(buf, np.array([end - t_at]))[0])
            if cpu_at:
                cpu = int(_u32(buf, np.array([end - cpu_at]))[0])
        return LostEvents(cpu, t, t, count)


def _trailer_layout(sample_type: int) -> tuple[int, int]:
    """Distances from a record's end to the sample_id trailer's time and cpu (0: absent)."""
    fields = [b for b in (S_TID, S_TIME, S_ID, S_STREAM_ID, S_CPU, S_IDENTIFIER)
              if sample_type & b]
    size = 8 * len(fields)
    t_at = cpu_at = 0
    for i, b in enumerate(fields):
        if b == S_TIME:
            t_at = size - 8 * i
        elif b == S_CPU:
            cpu_at = size - 8 * i
    return t_at, cpu_at


@dataclass(frozen=True, slots=True, order=True)
class SideBand:
    """A COMM or FORK record, applied in time order (file order is per CPU only)."""

    time: int
    seq: int
    kind: int
    tid: int
    pid: int
    parent: int
    comm: str

    def apply(self, names: TaskNames) -> None:
        names.tgid[self.tid] = self.pid
        if self.kind == REC_COMM:
            names.comm[self.tid] = self.comm
            return
        parent = names.comm.get(self.parent)
        if parent is not None:
            names.comm.setdefault(self.tid, parent)
