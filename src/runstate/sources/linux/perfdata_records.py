"""The data section of perf.data: what the C pass (``_perfscan``) needs to decode it.

The sample layout (``sample_type``) and the recording kernel's tracepoint
formats say where each sched field sits in a sample; they are worked out here
once and handed to :class:`~runstate.sources.linux._perfscan.Scanner`, which
walks the records, pulls those fields and orders the events (see
:mod:`.perfdata_order`).  COMM and FORK records (few) come back whole and are
decoded here: they name threads and give thread groups.  Damage is an
InputError with the byte offset (``--lenient`` skips and counts malformed
samples; so does a file whose writer was killed).
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass

from runstate._abi import check_constants, check_kernel
from runstate.errors import InputError
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux import _perfscan
from runstate.sources.linux.perfdata_header import HEADER_SIZE, PERF_TYPE_TRACEPOINT, Attr, Header
from runstate.sources.linux.perfdata_tracing import SCHED_KINDS
from runstate.sources.linux.schedkinds import (
    NEEDED_EVENTS,
    PID_LIMIT,
    RECORD_HINT,
    SchedKind,
    TaskNames,
)
from runstate.sources.linux.tpformat import EventFormat, Field

check_kernel(_perfscan)
check_constants(_perfscan, {"PID_LIMIT": PID_LIMIT})

# record types
REC_LOST, REC_COMM, REC_EXIT, REC_FORK, REC_SAMPLE, REC_LOST_SAMPLES = 2, 3, 4, 7, 9, 13
REC_FINISHED_ROUND, REC_COMPRESSED = 68, 81
# sample_type bits
S_IP, S_TID, S_TIME, S_ADDR, S_READ, S_CALLCHAIN, S_ID, S_CPU = 1, 2, 4, 8, 16, 32, 64, 128
S_PERIOD, S_STREAM_ID, S_RAW, S_IDENTIFIER = 256, 512, 1024, 1 << 16

#: the fields each sched kind gives the event columns pid, other_pid, prev_state (None: absent)
KIND_FIELDS = {
    SchedKind.SWITCH: ("prev_pid", "next_pid", "prev_state"),
    SchedKind.FORK: ("child_pid", "parent_pid", None),
    SchedKind.SEEN: ("common_pid", None, None),
}
OTHER_FIELDS = ("pid", None, None)
#: a field the scanner leaves out: (offset -1, size, signed)
ABSENT = (-1, 0, 0)
#: a comm field longer than this is not read (the kernel's TASK_COMM_LEN is 16)
COMM_MAX = 64


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


def tracepoint_attrs(header: Header) -> list[Attr]:
    """The attrs of tracepoint events that carry raw sample data."""
    return [a for a in header.attrs if a.type == PERF_TYPE_TRACEPOINT and a.sample_type & S_RAW]


class RecordDecoder:
    """The decoding plan of one perf.data file's data section.

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
        tp = tracepoint_attrs(header)
        self._formats, present = self._sched_formats(tp)
        self._id_of_kind = {int(SCHED_KINDS[fmt.name]): fid
                            for fid, fmt in self._formats.items() if fid in present}
        self._sample_id: dict[int, Attr] = {i: a for a in header.attrs for i in a.ids}
        self._layout = self._sample_layout(tp)
        self._trailer = _trailer_layout(tp[0].sample_type) if tp[0].sample_id_all else None
        self._multi = len(header.attrs) > 1
        self._bad_formats: dict[int, str] = {}
        #: perf -a opens each event once per CPU: a cut file has all CPUs once it has seen
        #: this many (per-task recordings have no such count); set by the reader
        self.n_streams: int | None = None

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

    # ---- the C pass --------------------------------------------------------------

    def scanner(self, fd: int) -> _perfscan.Scanner:
        """A pass over the data section of the file open at ``fd``."""
        h, lay = self.header, self._layout
        t_at, cpu_at = self._trailer or (0, 0)
        layout = (lay.time, lay.cpu, lay.id, lay.before_callchain, int(lay.callchain),
                  t_at, cpu_at, int(self._multi))
        kinds = tuple(self._kind_spec(fid, kind) for kind, fid in self._id_of_kind.items())
        ids = array("q", sorted(self._raw_ids()))  # no numpy: the pass may start before it
        n_streams = -1 if self.n_streams is None else self.n_streams
        flags = (int(h.truncated), int(self._options.lenient), n_streams)
        return _perfscan.Scanner(fd, h.data_offset, h.data_size, layout, kinds, ids, flags)

    def _raw_ids(self) -> set[int]:
        return {i for i, a in self._sample_id.items()
                if a.type == PERF_TYPE_TRACEPOINT and a.config in self._formats}

    def _kind_spec(self, fid: int, kind: int) -> tuple[object, ...]:
        """Where a kind's fields sit in its raw data; a format that cannot be read is
        marked bad, and its first sample is an error (formats of kinds never recorded
        are not looked at)."""
        fmt = self._formats[fid]
        need = max((f.offset + f.size for f in fmt.fields.values()), default=0)
        comms = (ABSENT[:2], ABSENT[:2])
        try:
            names = KIND_FIELDS.get(SchedKind(kind), OTHER_FIELDS)
            fields = tuple(_spec(fmt.field(n)) if n else ABSENT for n in names)
            actor = _spec(fmt.fields["common_pid"]) if "common_pid" in fmt.fields else ABSENT
            if kind == SchedKind.SWITCH:
                comms = (_comm_spec(fmt, "prev_comm"), _comm_spec(fmt, "next_comm"))
        except (KeyError, ValueError) as err:
            self._bad_formats[kind] = f"unknown tracepoint format: {err.args[0]}"
            return (fid, kind, max(need, 2), 1, ABSENT, ABSENT, ABSENT, ABSENT, *comms)
        return (fid, kind, max(need, 2), 0, *fields, actor, *comms)

    def error(self, code: int, offset: int, count: int, kind: int) -> InputError:
        """The InputError for an error the scanner stopped at."""
        if code == _perfscan.E_RECORD_SIZE:
            return InputError(self.path, "bad record size (damaged file)", offset=offset)
        if code == _perfscan.E_TAIL:
            return InputError(self.path, f"data section ends inside a record ({count} bytes "
                              "left)", offset=offset)
        if code == _perfscan.E_COMPRESSED:
            return InputError(self.path, "compressed perf.data (perf record -z) is not "
                              "supported; record without -z", offset=offset)
        if code == _perfscan.E_SHORT:
            return InputError(self.path, f"{count} sample records too short for their layout "
                              "(damaged file; --lenient skips them)", offset=offset)
        return InputError(self.path, self._bad_formats.get(kind, "unknown tracepoint format"),
                          offset=offset)

    # ---- side band ---------------------------------------------------------------

    def side_band(self, record: bytes, kind: int, seq: int) -> SideBand | None:
        """Decode a COMM (name) or FORK (thread group) record."""
        body = record[8:]
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


def _spec(fld: Field) -> tuple[int, int, int]:
    """(offset, size, signed) of a numeric field, read as the numpy path did: 8-byte
    fields signed, smaller ones as the format says."""
    if fld.size not in (1, 2, 4, 8):
        raise ValueError(f"field size {fld.size}")
    return fld.offset, fld.size, int(fld.signed or fld.size == 8)


def _comm_spec(fmt: EventFormat, name: str) -> tuple[int, int]:
    """(offset, size) of a fixed comm field, or absent (a ``__data_loc`` or long one)."""
    fld = fmt.fields.get(name)
    if fld is None or fld.data_loc or fld.size > COMM_MAX:
        return ABSENT[:2]
    return fld.offset, fld.size


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
