"""perf.data files read directly (no perf binary): sched tracepoint samples -> SchedEvents.

Layout (tools/perf/Documentation/perf.data-file-format.txt): a 104-byte header
(``PERFILE2``, attrs, data and feature bitmap), ``perf_event_attr`` entries
with their sample ids, the data section of variable-length records, then the
feature sections.  The tracepoint formats come from the file's own
HEADER_TRACING_DATA section (format files of the recording kernel), so raw
sample fields are decoded with that kernel's offsets.

The C walker ``_perfwalk`` finds record boundaries in 8 MiB blocks; sample
fields are then gathered with numpy.  Records are time-ordered only within
``FINISHED_ROUND`` windows: samples are buffered and released up to the
largest time seen before the previous round ended (perf's own rule), so
memory stays bounded by about two rounds.

Before conversion one scan collects thread names and thread groups (COMM and
FORK records in time order; a thread no COMM record names gets the comm its
switches carry) and the threads that have events (the default grouping is
``vm`` only if a vCPU thread is among them).  That scan keeps the decoded
events (up to ``CACHE_BYTES``) for the two passes of the analysis, and with
them in memory each LOST record's window starts exactly at its CPU's last
kept event.  perf's untimed end-of-run LOST_SAMPLES summaries are only counted.

A file whose writer was killed keeps a zero data size in its header and no
feature sections: the data runs to the end of the file (a partial last record
is dropped and counted), and the formats are taken from this host's tracefs
when the file has none (noted).  Damage elsewhere is an InputError with the
byte offset (``--lenient`` skips and counts malformed samples).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import numpy.typing as npt

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.sources.base import FormatInfo, ReadOptions, SourceInfo
from runstate.sources.linux import _perfwalk
from runstate.sources.linux.sched import (
    NEEDED_EVENTS,
    PID_LIMIT,
    RECORD_HINT,
    LostEvents,
    sched_batches,
)
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames
from runstate.sources.linux.tpformat import EventFormat, FormatError, parse_format

MAGIC = b"PERFILE2"
HEADER_SIZE = 104
BLOCK = 8 << 20
#: decoded events kept in memory between the two passes, at most (about 29 B/event)
CACHE_BYTES = 96 << 20

# record types
REC_LOST, REC_COMM, REC_EXIT, REC_FORK, REC_SAMPLE, REC_LOST_SAMPLES = 2, 3, 4, 7, 9, 13
REC_FINISHED_ROUND, REC_COMPRESSED = 68, 81
# sample_type bits
S_IP, S_TID, S_TIME, S_ADDR, S_READ, S_CALLCHAIN, S_ID, S_CPU = 1, 2, 4, 8, 16, 32, 64, 128
S_PERIOD, S_STREAM_ID, S_RAW, S_IDENTIFIER = 256, 512, 1024, 1 << 16
# features
FEAT_TRACING_DATA, FEAT_NRCPUS, FEAT_CMDLINE = 1, 7, 11
PERF_TYPE_TRACEPOINT = 2
_CLOCKS = {0: "realtime", 1: "mono", 4: "mono_raw", 7: "boot", 11: "tai"}
_KINDS = {"sched_switch": SchedKind.SWITCH, "sched_wakeup": SchedKind.WAKEUP,
          "sched_wakeup_new": SchedKind.WAKEUP_NEW, "sched_process_exit": SchedKind.EXIT,
          "sched_process_fork": SchedKind.FORK}


@dataclass(frozen=True, slots=True)
class Attr:
    type: int
    config: int
    sample_type: int
    read_format: int
    sample_id_all: bool
    clock: str
    ids: tuple[int, ...]
    enable_on_exec: bool = False


@dataclass(slots=True)
class Header:
    attrs: list[Attr]
    data_offset: int
    data_size: int
    truncated: bool
    formats: dict[int, EventFormat] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)
    n_cpus: int | None = None
    #: perf's own command line (HEADER_CMDLINE), if recorded
    cmdline: list[str] | None = None


def _strings(blob: bytes) -> list[str] | None:
    """A perf header string list: u32 count, then (u32 length, padded text) each."""
    try:
        count = struct.unpack_from("<I", blob)[0]
        pos, out = 4, []
        for _ in range(min(count, 4096)):
            length = struct.unpack_from("<I", blob, pos)[0]
            out.append(blob[pos + 4:pos + 4 + length].split(b"\0", 1)[0]
                       .decode("utf-8", "replace"))
            pos += 4 + length
        return out
    except struct.error:
        return None


def system_wide(cmdline: list[str] | None, attrs: list[Attr]) -> bool:
    """Whether perf traced every task (-a / -C), judged from its command line.

    Without a command line: a per-task recording of a started workload has
    enable_on_exec set; anything else is taken as system-wide.
    """
    if cmdline is None:
        return not any(a.enable_on_exec for a in attrs)
    for arg in cmdline[1:]:
        if arg == "--":
            break
        if arg in ("-a", "--all-cpus") or arg.startswith(("-C", "--cpu")):
            return True
        if arg.startswith("-") and not arg.startswith("--") and arg[1:].isalpha() \
                and "a" in arg[1:]:
            return True
    return False


class _Fail(Exception):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


# ---- header, attrs and feature sections -----------------------------------------


def read_header(path: str, f: IO[bytes]) -> Header:
    size = os.fstat(f.fileno()).st_size
    raw = f.read(HEADER_SIZE)
    if len(raw) < 16 or raw[:8] != MAGIC:
        raise InputError(path, "not a perf.data file (no PERFILE2 magic)", offset=0)
    if struct.unpack_from("<Q", raw, 8)[0] != HEADER_SIZE:
        raise InputError(path, "pipe-mode perf.data is not supported; record to a file "
                         "(perf record -o FILE)", offset=8)
    if len(raw) < HEADER_SIZE:
        raise InputError(path, "truncated header", offset=len(raw))
    attr_size, a_off, a_size, d_off, d_size = struct.unpack_from("<5Q", raw, 16)
    features = int.from_bytes(raw[72:104], "little")
    if attr_size < 80 or a_off + a_size > size or a_size % attr_size:
        raise InputError(path, "attribute section out of bounds", offset=24)
    if d_off < HEADER_SIZE or d_off > size:
        raise InputError(path, "data section out of bounds", offset=40)
    truncated = d_size == 0 or d_off + d_size > size
    if truncated:
        d_size = size - d_off
    header = Header(_read_attrs(path, f, a_off, a_size, attr_size, size), d_off, d_size,
                    truncated)
    if not truncated:
        _read_features(path, f, header, features, d_off + d_size, size)
    return header


def _read_attrs(path: str, f: IO[bytes], off: int, size: int, entry: int,
                file_size: int) -> list[Attr]:
    f.seek(off)
    blob = f.read(size)
    attrs = []
    for base in range(0, size, entry):
        a_type, _, config, _, sample_type, read_format, flags = struct.unpack_from(
            "<IIQQQQQ", blob, base)
        clockid = struct.unpack_from("<i", blob, base + 92)[0] if entry - 16 >= 96 else 0
        use_clock = bool(flags >> 25 & 1)
        ids_off, ids_size = struct.unpack_from("<QQ", blob, base + entry - 16)
        if ids_off + ids_size > file_size or ids_size % 8:
            raise InputError(path, "attribute ids out of bounds", offset=off + base)
        f.seek(ids_off)
        ids = struct.unpack(f"<{ids_size // 8}Q", f.read(ids_size))
        clock = _CLOCKS.get(clockid, f"clockid {clockid}") if use_clock else "perf"
        attrs.append(Attr(a_type, config, sample_type, read_format, bool(flags >> 18 & 1),
                          clock, ids, bool(flags >> 12 & 1)))
    if not attrs:
        raise InputError(path, "no event attributes", offset=off)
    return attrs


def _read_features(path: str, f: IO[bytes], header: Header, bits: int, at: int,
                   size: int) -> None:
    present = [b for b in range(256) if bits >> b & 1]
    f.seek(at)
    table = f.read(16 * len(present))
    if len(table) < 16 * len(present):
        return
    for i, bit in enumerate(present):
        off, length = struct.unpack_from("<QQ", table, 16 * i)
        if off + length > size:
            raise InputError(path, f"feature section {bit} out of bounds", offset=at + 16 * i)
        if bit == FEAT_TRACING_DATA:
            f.seek(off)
            try:
                _parse_tracing_data(f.read(length), header)
            except (_Fail, struct.error, UnicodeDecodeError, FormatError) as err:
                where = off + err.offset if isinstance(err, _Fail) else off
                raise InputError(path, f"bad tracing data section: {err}", offset=where) \
                    from None
        elif bit == FEAT_NRCPUS and length >= 8:
            f.seek(off)
            header.n_cpus = struct.unpack("<II", f.read(8))[1]
        elif bit == FEAT_CMDLINE:
            f.seek(off)
            header.cmdline = _strings(f.read(length))


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Fail("section ends early", self.pos)
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
            raise _Fail("unterminated string", self.pos)
        text = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return text


def _parse_tracing_data(data: bytes, header: Header) -> None:
    """HEADER_TRACING_DATA: the recording kernel's tracepoint format files."""
    c = _Cursor(data)
    if c.take(10) != b"\x17\x08\x44tracing":
        raise _Fail("no tracing magic", 0)
    version = c.cstr()
    if c.take(1) != b"\0":
        raise _Fail("big-endian tracing data is not supported", c.pos - 1)
    c.take(1 + 4)  # long size, page size
    for expected in ("header_page", "header_event"):
        if c.cstr() != expected:
            raise _Fail(f"expected {expected}", c.pos)
        c.take(c.u64())
    for _ in range(c.u32()):          # ftrace's own events
        c.take(c.u64())
    for _ in range(c.u32()):          # event systems
        system = c.cstr()
        for _ in range(c.u32()):
            text = c.take(c.u64()).decode("utf-8", "replace")
            if system == "sched":
                fmt = parse_format(text, system)
                header.formats[fmt.id] = fmt
    c.take(c.u32())                   # kallsyms
    c.take(c.u32())                   # printk formats
    if version >= "0.6" and c.pos + 8 <= len(data):
        for line in c.take(c.u64()).decode("utf-8", "replace").splitlines():
            pid, _, comm = line.partition(" ")
            if pid.isdigit():
                header.cmdlines[int(pid)] = comm


def _host_formats() -> dict[int, EventFormat]:
    formats = {}
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        base = os.path.join(root, "events", "sched")
        if not os.path.isdir(base):
            continue
        for name in _KINDS:
            try:
                with open(os.path.join(base, name, "format"), encoding="utf-8") as f:
                    fmt = parse_format(f.read(), "sched")
            except (OSError, FormatError):
                continue
            formats[fmt.id] = fmt
        break
    return formats


# ---- sample layout --------------------------------------------------------------


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


# ---- the reader -------------------------------------------------------------------


class PerfDataSource:
    """A perf.data file of sched tracepoint samples."""

    def __init__(self, path: str, options: ReadOptions) -> None:
        self.path = path
        self._options = options
        self.registry = Registry()
        self.info = SourceInfo(format="perf-data", path=path)
        self.rereadable = True
        self._names: TaskNames | None = None
        self._cache: list[SchedEvents | LostEvents] | None = None
        self._active: set[int] | None = None
        self._untimed = 0
        self._naming: TaskNames | None = None   # names being completed during the scan
        try:
            with open(path, "rb") as f:
                self.header = read_header(path, f)
        except OSError as err:
            raise InputError(path, err.strerror or str(err)) from None
        self._setup()

    def _setup(self) -> None:
        h = self.header
        tp = [a for a in h.attrs if a.type == PERF_TYPE_TRACEPOINT and a.sample_type & S_RAW]
        self.info.clock = tp[0].clock if tp else h.attrs[0].clock
        if h.truncated:
            self.info.notes.append("perf.data was not finished (writer killed?): read up to "
                                   "the last whole record")
        if not h.formats:
            h.formats = _host_formats()
            if not h.formats:
                raise InputError(self.path, "the file carries no tracepoint formats (perf "
                                 "killed before it finished writing?) and this host has no "
                                 "tracefs sched formats to use instead")
            self.info.notes.append("the file carries no tracepoint formats; used this "
                                   "host's tracefs formats")
        wanted = {fid: fmt for fid, fmt in h.formats.items() if fmt.name in _KINDS}
        present = {a.config for a in tp}
        names = {wanted[c].name for c in present if c in wanted}
        if "sched_switch" not in names:
            have = ", ".join(sorted(f"sched:{n}" for n in names)) or "none"
            raise InputError(self.path, f"no sched tracepoint samples (sched events in file: "
                             f"{have}); runstate needs {', '.join(NEEDED_EVENTS)}; "
                             + RECORD_HINT)
        self._id_of_kind = {int(_KINDS[fmt.name]): fid for fid, fmt in wanted.items()
                            if fid in present}
        self._formats = wanted
        self._sample_id: dict[int, Attr] = {i: a for a in h.attrs for i in a.ids}
        types = {(a.sample_type, a.read_format) for a in tp}
        if len(types) != 1:
            raise InputError(self.path, "tracepoint events recorded with different sample "
                             "layouts are not supported", offset=HEADER_SIZE)
        sample_type, read_format = types.pop()
        if not sample_type & S_TIME or not sample_type & S_CPU:
            raise InputError(self.path, "samples lack time or cpu (record with perf record -a)")
        try:
            self._layout = Layout.of(sample_type, read_format)
        except ValueError as err:
            raise InputError(self.path, str(err), offset=HEADER_SIZE) from None
        self._trailer = _trailer_layout(tp[0].sample_type) if tp[0].sample_id_all else None
        self._multi = len(h.attrs) > 1
        self._filtered = not system_wide(h.cmdline, h.attrs)
        if self._filtered:
            self.info.notes.append("perf recorded only some tasks (no -a): switch-ins by "
                                   "untraced tasks are missing, so running and runnable times "
                                   "are estimates and host idleness is unknown; record with -a")

    # ---- public ----------------------------------------------------------------

    def batches(self) -> Iterator[EventBatch]:
        names = self._task_names()
        self.info.anomalies.clear()
        self.info.initial_states.clear()
        if self._untimed:
            self.info.anomalies["lost_samples_untimed"] = self._untimed
        items = iter(self._cache) if self._cache is not None else self._items()
        yield from sched_batches(self.path, items, names, self.registry, self.info,
                                 self._options, n_cpus=self.header.n_cpus,
                                 active=self._active, filtered=self._filtered)

    def _scan_events(self) -> None:
        """Decode once: the tids with events, and the stream itself while it fits CACHE_BYTES."""
        kept: list[SchedEvents | LostEvents] | None = []
        seen = np.zeros(PID_LIMIT, np.bool_)
        size = 0
        for item in self._items():
            if isinstance(item, LostEvents):
                if kept is not None:
                    kept.append(item)
                continue
            for col in (item.pid, item.other_pid):
                seen[col[(col > 0) & (col < PID_LIMIT)]] = True
            if kept is not None:
                kept.append(item)
                size += 29 * len(item)
                if size > CACHE_BYTES:
                    kept = None
        self._cache = None if kept is None else self._place_losses(kept)
        self._active = set(np.flatnonzero(seen).tolist())

    # ---- records ---------------------------------------------------------------

    def _records(self) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64],
                                         npt.NDArray[np.uint32], int]]:
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

    def _task_names(self) -> TaskNames:
        if self._names is not None:
            return self._names
        names = TaskNames()
        names.comm.update(self.header.cmdlines)
        side: list[SideBand] = []
        for buf, offs, types, _ in self._records():
            wanted = np.flatnonzero((types == REC_COMM) | (types == REC_FORK))
            for o, kind in zip(offs[wanted].tolist(), types[wanted].tolist(), strict=True):
                record = self._side_band(buf, o, kind, len(side))
                if record is not None:
                    side.append(record)
        for record in sorted(side):
            record.apply(names)
        self._naming = names
        self._scan_events()
        self._naming = None
        self._names = names
        return names

    def _items(self) -> Iterator[SchedEvents | LostEvents]:
        """Time-ordered chunks of about ``chunk_rows`` events, with losses between them."""
        held: list[SchedEvents] = []
        n = 0
        for item in self._ordered():
            if isinstance(item, LostEvents):
                if held:
                    yield SchedEvents.concat(held)
                    held, n = [], 0
                yield item
                continue
            held.append(item)
            n += len(item)
            if n >= self._options.chunk_rows:
                yield SchedEvents.concat(held)
                held, n = [], 0
        if held:
            yield SchedEvents.concat(held)

    def _ordered(self) -> Iterator[SchedEvents | LostEvents]:
        order = _RoundOrder()
        for buf, offs, types, base in self._records():
            if np.any(types == REC_COMPRESSED):
                pos = int(offs[np.argmax(types == REC_COMPRESSED)])
                raise InputError(self.path, "compressed perf.data (perf record -z) is not "
                                 "supported; record without -z", offset=base + pos)
            rounds = offs[types == REC_FINISHED_ROUND]
            samples = offs[types == REC_SAMPLE]
            events, sample_pos = self._decode(buf, samples)
            losses = [self._lost(buf, o, 16) for o in offs[types == REC_LOST].tolist()]
            losses += [self._lost(buf, o, 8) for o in offs[types == REC_LOST_SAMPLES].tolist()]
            losses = self._placed(losses)
            yield from order.add(events, sample_pos, rounds, losses)
        yield from order.flush_all()

    def _decode(self, buf: npt.NDArray[np.uint8], offs: npt.NDArray[np.int64]
                ) -> tuple[SchedEvents, npt.NDArray[np.int64]]:
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
                if self._naming is not None:
                    self._name_from_raw(buf, raw, pid, fmt, "prev_comm")
                    self._name_from_raw(buf, raw, other, fmt, "next_comm")
            elif kind == SchedKind.FORK:
                pid, other, state = get("child_pid"), get("parent_pid"), zero
            else:
                pid, other, state = get("pid"), minus, zero
        except (KeyError, ValueError) as err:
            raise InputError(self.path, f"unknown tracepoint format: {err.args[0]}") from None
        return SchedEvents.from_columns(time, cpu, np.full(n, kind, np.int8), pid, other,
                                        state)

    def _place_losses(self, items: list[SchedEvents | LostEvents]
                      ) -> list[SchedEvents | LostEvents]:
        """Put each loss where it began: right after the last event its CPU kept.

        While streaming, a LOST record is met only with the first event after
        the loss; with the whole stream in memory the window can start exactly.
        """
        losses = [i for i in items if isinstance(i, LostEvents)]
        events = [i for i in items if isinstance(i, SchedEvents)]
        if not losses:
            return items
        allev = SchedEvents.concat(events)
        placed = []
        for cpu in sorted({x.cpu for x in losses}):
            times = allev.time[allev.cpu == cpu]
            for loss in (x for x in losses if x.cpu == cpu):
                at = int(np.searchsorted(times, loss.end_ns, "left"))
                begin = int(times[at - 1]) if at > 0 else loss.end_ns
                placed.append(LostEvents(cpu, begin, loss.end_ns, loss.count))
        out: list[SchedEvents | LostEvents] = []
        start = 0
        step = self._options.chunk_rows
        for loss in sorted(placed, key=lambda x: x.begin_ns):
            at = int(np.searchsorted(allev.time, loss.begin_ns, "right"))
            out.extend(_slice(allev, a, min(a + step, at)) for a in range(start, at, step))
            out.append(loss)
            start = max(start, at)
        n = len(allev)
        out.extend(_slice(allev, a, min(a + step, n)) for a in range(start, n, step))
        return out

    def _placed(self, losses: list[LostEvents]) -> list[LostEvents]:
        """Losses with a time; perf's end-of-run LOST_SAMPLES summaries have none.

        Those repeat what the timed LOST records already said, so they are only
        counted (``lost_samples_untimed``), never placed in the timeline.
        """
        placed = []
        for loss in losses:
            if loss.end_ns > 0:
                placed.append(loss)
            elif self._names is None:
                self._untimed += loss.count or 1
        return placed

    def _side_band(self, buf: npt.NDArray[np.uint8], o: int, kind: int, seq: int
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
        names = self._naming
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

    def _lost(self, buf: npt.NDArray[np.uint8], o: int, count_at: int) -> LostEvents:
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


def _slice(ev: SchedEvents, start: int, stop: int) -> SchedEvents:
    return SchedEvents(ev.time[start:stop], ev.cpu[start:stop], ev.kind[start:stop],
                       ev.pid[start:stop], ev.other_pid[start:stop], ev.prev_state[start:stop])


class _RoundOrder:
    """Releases samples in time order under perf's FINISHED_ROUND guarantee."""

    def __init__(self) -> None:
        self._held: list[SchedEvents] = []
        self._losses: list[LostEvents] = []
        self._limit: int | None = None     # max time seen when the previous round ended
        self._last_on_cpu: dict[int, int] = {}
        self._max_time: int | None = None

    def add(self, events: SchedEvents, pos: npt.NDArray[np.int64],
            rounds: npt.NDArray[np.int64], losses: list[LostEvents]
            ) -> Iterator[SchedEvents | LostEvents]:
        """Take one block's samples (file positions ``pos``) and round boundaries."""
        self._losses.extend(losses)
        by_pos = np.argsort(pos, kind="stable")
        events, pos = events.take(by_pos), pos[by_pos]
        cuts = np.searchsorted(pos, rounds).tolist()
        start = 0
        for cut in cuts:
            self._hold(_slice(events, start, cut))
            start = cut
            limit, self._limit = self._limit, self._max_time
            if limit is not None:
                yield from self._release(limit)
        self._hold(_slice(events, start, len(events)))

    def _hold(self, events: SchedEvents) -> None:
        if len(events):
            self._held.append(events)
            t = int(events.time.max())
            self._max_time = t if self._max_time is None else max(self._max_time, t)

    def _release(self, limit: int | None) -> Iterator[SchedEvents | LostEvents]:
        if not self._held and not self._losses:
            return
        allev = self._held[0] if len(self._held) == 1 else SchedEvents.concat(self._held)
        if len(allev) > 1 and bool(np.any(allev.time[1:] < allev.time[:-1])):
            allev = allev.take(np.argsort(allev.time, kind="stable"))
        n = len(allev)
        cut = n if limit is None else int(np.searchsorted(allev.time, limit, "right"))
        self._held = [_slice(allev, cut, n)] if cut < n else []
        due = [x for x in self._losses if limit is None or x.end_ns <= limit]
        self._losses = [x for x in self._losses if not (limit is None or x.end_ns <= limit)]
        start = 0
        for loss in sorted(due, key=lambda x: x.end_ns):
            # the record is written with the first event that made it after the loss
            at = int(np.searchsorted(allev.time[:cut], loss.end_ns, "left"))
            if at > start:
                yield self._note_cpus(_slice(allev, start, at))
            begin = self._last_on_cpu.get(loss.cpu, loss.end_ns)
            yield LostEvents(loss.cpu, min(begin, loss.end_ns), loss.end_ns, loss.count)
            start = at
        if start < cut:
            yield self._note_cpus(_slice(allev, start, cut))

    def _note_cpus(self, ev: SchedEvents) -> SchedEvents:
        """Remember each CPU's latest event: a loss there began after it."""
        for cpu in np.unique(ev.cpu).tolist():
            self._last_on_cpu[cpu] = int(ev.time[np.flatnonzero(ev.cpu == cpu)[-1]])
        return ev

    def flush_all(self) -> Iterator[SchedEvents | LostEvents]:
        yield from self._release(None)


class PerfDataReader:
    FORMAT = FormatInfo("perf-data", "perf.data from perf record -e sched:... (read directly)",
                        100)

    def sniff(self, path: str, head: bytes) -> bool:
        return head[:8] == MAGIC

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions
             ) -> PerfDataSource:
        if stream is not None:
            raise InputError(path, "perf.data cannot be read from stdin; give the file path")
        return PerfDataSource(path, options)


PERF_DATA_READER = PerfDataReader()
