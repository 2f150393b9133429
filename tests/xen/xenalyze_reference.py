"""Test-only reference: the record-by-record Python emulation of xenalyze's rules.

It keeps every decoded record and every interval in memory and is slow; it
exists so the C emulation (``runstate.analysis._xenalyze``) can be checked
against it on many random traces (``tests/xen/test_xenalyze_port.py``).  It
shares no code with what it checks: the file is decoded here with ``struct``
from the record layout in docs/xentrace.md, and the validation rules (and
their one-line messages) are written out again below.
"""

from __future__ import annotations

import bisect
import heapq
import struct
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import numpy.typing as npt

from runstate.errors import InputError
from runstate.sources.base import ReadOptions

# ---- the file format (little-endian 32-bit words) -----------------------------

#: a window header: TRC_TRACE_CPU_CHANGE with 2 data words (pcpu, byte size), no TSC
CPU_CHANGE_HEADER = 0x2001F003
MAX_PCPUS = 4096
MAX_WINDOW_BYTES = 1 << 30
EVENT_MASK = 0x0FFFFFFF
LOST_RECORDS = 0x0001F001
WRAP_BUFFER = 0x0001F002
RUNSTATE_CHANGE = 0x00021001
CONTINUE_RUNNING = 0x00021002
#: event & this == RUNSTATE_CHANGE: old state in bits 8-11, new state in bits 4-7
RUNSTATE_CHANGE_BITS = 0x0FFFF00F
IDLE_DOMAIN = 32767
DEFAULT_CPU_HZ = 2.4e9

# row kinds
CHANGE, CONTINUE, LOST_ROW, WRAP, OTHER = range(5)

# vCPU states (xenalyze's, in its numbering of the public ones plus internal ones)
RUNNING, RUNNABLE, BLOCKED, OFFLINE, LOST, INIT, QUEUED = range(7)

#: xenalyze's domain runstate labels, in its print order, with runstate's names
LABELS: tuple[tuple[str, str], ...] = (
    ("blocked", "blocked"),
    ("partial run", "partial_run"),
    ("full run", "full_run"),
    ("partial contention", "partial_contention"),
    ("concurrency_hazard", "concurrency_hazard"),
    ("full_contention", "full_contention"),
    ("lost", "lost"),
)
_BY_MASK = (None, "full_run", "full_contention", "concurrency_hazard", "blocked",
            "partial_run", "partial_contention", "concurrency_hazard")


@dataclass(frozen=True, slots=True)
class XenalyzeState:
    """One domain runstate line: total cycles, number of non-zero intervals, their lengths."""

    cycles: int
    count: int
    intervals: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class XenalyzeDomain:
    dom: int
    #: state name (full_run, ..., lost) -> figures; only states with count > 0
    states: dict[str, XenalyzeState]


@dataclass(frozen=True, slots=True)
class XenalyzeResult:
    cpu_hz: float
    cpu_hz_assumed: bool
    #: last minus first processed record's order TSC ("Total time")
    total_cycles: int
    #: domains in xenalyze's order (ascending id, so the idle domain last)
    domains: tuple[XenalyzeDomain, ...]
    notes: tuple[str, ...] = ()


# ---- the model --------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Domain:
    dom: int
    vcpus: list[_Vcpu] = field(default_factory=list)
    state: str | None = None
    last: int = 0
    cycles: dict[str, int] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, list[int]] = field(default_factory=dict)

    def classify(self) -> str | None:
        run = runnable = blocked = 0
        visible = lost = 0
        for v in self.vcpus:
            s = v.state
            if s == INIT:
                continue
            visible += 1
            if s == LOST:
                lost += 1
            elif s == RUNNING:
                run = 1
            elif s == RUNNABLE:
                runnable = 1
            elif s in (BLOCKED, OFFLINE):
                blocked = 1
        if visible == 0:
            return None
        if lost == visible:
            return "lost"
        return _BY_MASK[run | runnable << 1 | blocked << 2]

    def update(self, tsc: int) -> None:
        """xenalyze's domain runstate update: charge (tsc - last) to the previous state."""
        if self.last != 0 and self.last < tsc and self.state is not None:
            span = tsc - self.last
            self.cycles[self.state] = self.cycles.get(self.state, 0) + span
            self.count[self.state] = self.count.get(self.state, 0) + 1
            self.intervals.setdefault(self.state, []).append(span)
        self.state = self.classify()
        self.last = tsc


@dataclass(slots=True, eq=False)
class _Vcpu:
    dom: int
    vid: int
    domain: _Domain | None
    state: int = INIT
    pcpu: int | None = None


@dataclass(slots=True, eq=False)
class _Pcpu:
    pid: int
    placeholder: _Vcpu
    current: _Vcpu | None = None
    inferred: bool = False
    first_tsc: int | None = None
    last_tsc: int = 0


class _Model:
    """The vCPU / pcpu / domain state machine of xenalyze."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.domains: dict[int, _Domain] = {}
        self.vcpus: dict[tuple[int, int], _Vcpu] = {}
        self.pcpus: dict[int, _Pcpu] = {}
        self.lost_pcpus = 0

    def pcpu(self, pid: int) -> _Pcpu:
        p = self.pcpus.get(pid)
        if p is None:
            holder = _Vcpu(32768, pid, None, RUNNING, pid)
            p = self.pcpus[pid] = _Pcpu(pid, holder, holder)
        return p

    def vcpu(self, dom: int, vid: int) -> _Vcpu:
        v = self.vcpus.get((dom, vid))
        if v is None:
            d = self.domains.get(dom)
            if d is None:
                d = self.domains[dom] = _Domain(dom)
            v = self.vcpus[(dom, vid)] = _Vcpu(dom, vid, d)
            d.vcpus.append(v)
        return v

    def set(self, v: _Vcpu, state: int, tsc: int) -> None:
        v.state = state
        if v.domain is not None:
            v.domain.update(tsc)

    def fatal(self, off: int, reason: str) -> InputError:
        return InputError(self.path, f"xenalyze would stop here: {reason}", offset=off)

    # -- records ---------------------------------------------------------------

    def runstate(self, p: _Pcpu, dom: int, vid: int, old: int, new: int, cont: bool, tsc: int,
                 off: int) -> None:
        v = self.vcpu(dom, vid)
        if v.state == INIT:
            self._start(p, v, old, new, tsc, off)
            return
        if v.state == LOST:
            if new != RUNNING:
                return
            if cont:
                if p.current is not None and p.current is not v:
                    self.set(p.current, LOST, tsc)
                p.current = None
                self._next(p, v, tsc, off)
                self.set(v, RUNNING, tsc)
                return
            self._next(p, v, tsc, off)
            return
        if v.state != old and v.state == RUNNING:
            return  # skew suspected: xenalyze ignores the record
        if cont:
            self.set(v, RUNNING, tsc)
            return
        if old == RUNNING or v.state == RUNNING:
            if old == RUNNING:
                self._prev(p, v, tsc, new)
            if new == RUNNING:
                self._next(p, v, tsc, off)
            return
        if new == RUNNING:
            self._next(p, v, tsc, off)
            return
        self.set(v, new, tsc)

    def _start(self, p: _Pcpu, v: _Vcpu, old: int, new: int, tsc: int, off: int) -> None:
        """A vCPU in init: only a move into running makes it visible."""
        if old == RUNNING:
            if p.current is not p.placeholder:
                raise self.fatal(off, f"first record of d{v.dom}v{v.vid} says it was running "
                                 f"on pcpu {p.pid}, which already runs another vCPU")
            p.placeholder.state = QUEUED
            p.current = None
        if new != RUNNING:
            return
        start = tsc
        if old == RUNNING and p.first_tsc is not None:
            start = p.first_tsc
        self.set(v, RUNNING, start)
        p.current, p.inferred, v.pcpu = v, False, p.pid

    def _prev(self, p: _Pcpu, v: _Vcpu, tsc: int, new: int) -> None:
        if p.current is v:
            p.current = None
        state = LOST if self.lost_pcpus > 0 and v.dom != IDLE_DOMAIN else new
        self.set(v, state, tsc)

    def _next(self, p: _Pcpu, v: _Vcpu, tsc: int, off: int) -> None:
        if p.current is not None and p.current is not v:
            if not p.inferred:
                raise self.fatal(off, f"d{v.dom}v{v.vid} starts running on pcpu {p.pid}, "
                                 f"where d{p.current.dom}v{p.current.vid} is still running")
            self.set(p.current, LOST, tsc)
        p.current, p.inferred, v.pcpu = v, False, p.pid
        self.set(v, RUNNING, tsc)

    def lost_start(self, p: _Pcpu, tsc: int) -> None:
        if p.current is not None:
            self.set(p.current, LOST, tsc)
            p.current = None
        for dom in sorted(self.domains):
            for v in self.domains[dom].vcpus:
                if v.state != RUNNING:
                    self.set(v, LOST, tsc)
        self.lost_pcpus += 1

    def lost_end(self, p: _Pcpu, dom: int, vid: int, tsc: int) -> None:
        v = self.vcpu(dom, vid)
        self.set(v, RUNNING, tsc)
        p.current, p.inferred, v.pcpu = v, True, p.pid
        self.lost_pcpus -= 1

    def end_of_pcpu(self, p: _Pcpu) -> None:
        if p.current is not None:
            self.set(p.current, LOST, p.last_tsc)
            p.current = None


# ---- file layout and merge order ---------------------------------------------


@dataclass(slots=True)
class _Cursor:
    pid: int
    #: the window whose header the cursor is at, or whose rows it reads
    window: int
    row: int = 0
    end: int = 0
    #: 0: next row; 1: a lost record's LOST_END is due
    phase: int = 0
    #: at the window's header (xenalyze processes headers like records)
    header: bool = True
    #: order key of the pcpu's last processed record (0 before any): the key
    #: of a header, which has no TSC of its own
    last_key: int = 0


def _windows(data: bytes, path: str) -> list[tuple[int, int, int]]:
    """(offset, pcpu, end) of every window header.

    The decoder has already validated them (or, with --lenient, skipped broken
    headers by searching for the next plausible one); this does the same."""
    out = []
    off = 0
    while len(data) - off >= 12:
        hdr, pcpu, size = struct.unpack_from("<IiI", data, off)
        if hdr != CPU_CHANGE_HEADER or not 0 <= pcpu < MAX_PCPUS or size % 4 \
                or size > MAX_WINDOW_BYTES:
            off += 4
            continue
        out.append((off, pcpu, min(off + 12 + size, len(data))))
        off += 12 + size
    return out


class _Merger:
    """xenalyze's pcpu discovery and smallest-order-TSC-first merge.

    Like xenalyze, a cursor processes the window headers it meets one at a
    time, in merge order, with the order key of its pcpu's last record (0 for a
    pcpu not started yet).  A pcpu activated on the way therefore processes
    its header at once and then its records that are older than the key of
    the cursor that found it, before that cursor passes the next window."""

    def __init__(self, windows: list[tuple[int, int, int]], rows: Rows) -> None:
        self.windows = windows
        self.rows = rows
        self.first_row = [bisect.bisect_left(rows.off, w[0]) for w in windows] + [len(rows)]
        self.seen: set[int] = set()
        self.heap: list[tuple[int, int, int]] = []
        self.cursors: dict[int, _Cursor] = {}
        self.seq = 0
        self.active_max = -1

    def start(self) -> None:
        for i, (_, pid, _) in enumerate(self.windows):
            if pid in self.seen:
                break
            self._activate(pid, i)

    def _activate(self, pid: int, window: int) -> None:
        self.seen.add(pid)
        c = self.cursors[pid] = _Cursor(pid, window)
        self.active_max = max(self.active_max, pid)
        self._push(c)

    def header(self, c: _Cursor) -> bool:
        """Process the window header c is at; False when the pcpu's data ended."""
        j = c.window
        owner = self.windows[j][1]
        if owner == c.pid:
            # the highest active pcpu peeks at the window after its own
            if c.pid == self.active_max and j + 1 < len(self.windows):
                peek = self.windows[j + 1][1]
                if peek not in self.seen:
                    self._activate(peek, j + 1)
            c.row, c.end = self.first_row[j], self.first_row[j + 1]
            if c.row < c.end:
                c.header = False
                self._push(c)
                return True
        elif owner not in self.seen:
            self._activate(owner, j)
        return self._next_window(c)

    def _next_window(self, c: _Cursor) -> bool:
        """Move to the next window's header; False at end of file (pcpu deactivated)."""
        j = c.window + 1
        if j >= len(self.windows):
            del self.cursors[c.pid]
            if c.pid == self.active_max:
                self.active_max = max(self.cursors, default=-1)
            return False
        c.window, c.header = j, True
        self._push(c)
        return True

    def key(self, c: _Cursor) -> int:
        if c.header:
            return c.last_key
        r = self.rows
        if r.kind[c.row] == LOST_ROW and c.phase == 0:
            return int(r.aux[c.row])
        return int(r.tsc[c.row])

    def _push(self, c: _Cursor) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.key(c), -self.seq, c.pid))

    def pop(self) -> _Cursor | None:
        while self.heap:
            _, _, pid = heapq.heappop(self.heap)
            c = self.cursors.get(pid)
            if c is not None:
                return c
        return None

    def advance(self, c: _Cursor) -> bool:
        """After processing a row: next row (or phase); False when the pcpu's data ended."""
        c.last_key = self.key(c)
        if self.rows.kind[c.row] == LOST_ROW and c.phase == 0:
            c.phase = 1
        else:
            c.phase = 0
            c.row += 1
            if c.row >= c.end:
                return self._next_window(c)
        self._push(c)
        return True


def run_xenalyze(path: str, stream: IO[bytes] | None, options: ReadOptions) -> XenalyzeResult:
    """Domain runstates of a xentrace file (or stream) with xenalyze's rules."""
    if stream is not None:
        data = stream.read()
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise InputError(path, err.strerror or str(err)) from None
    if not data:
        raise InputError(path, "empty file" if stream is None else "empty input")
    rows = Decoder(path, data, options.lenient).rows()
    cpu_hz = options.cpu_hz if options.cpu_hz is not None else DEFAULT_CPU_HZ
    model = _Model(path)
    merger = _Merger(_windows(data, path), rows)
    first, last = _replay(model, merger, rows)
    notes = []
    if options.cpu_hz is None:
        notes.append("cpu_hz not given (--cpu-hz); assumed 2.4 GHz like xenalyze")
    domains = tuple(
        XenalyzeDomain(dom, {
            name: XenalyzeState(d.cycles[name], d.count[name],
                                np.array(d.intervals[name], np.int64))
            for _, name in LABELS if d.count.get(name, 0) > 0})
        for dom, d in sorted(model.domains.items()))
    total = 0 if first is None or last is None else last - first
    return XenalyzeResult(cpu_hz, options.cpu_hz is None, total, domains, tuple(notes))


def _replay(model: _Model, merger: _Merger, rows: Rows) -> tuple[int | None, int | None]:
    first: int | None = None
    last: int | None = None
    merger.start()
    while True:
        c = merger.pop()
        if c is None:
            return first, last
        if c.header:
            if not merger.header(c) and c.pid in model.pcpus:
                model.end_of_pcpu(model.pcpus[c.pid])
            continue
        order = merger.key(c)
        first = order if first is None else first
        last = order
        p = model.pcpu(c.pid)
        if p.first_tsc is None:
            p.first_tsc = order
        i = c.row
        kind = rows.kind[i]
        off = rows.off[i]
        key = rows.ids[i]
        if kind in (CHANGE, CONTINUE):
            model.runstate(p, key >> 16, key & 0xFFFF, rows.old[i], rows.new[i],
                           kind == CONTINUE, order, off)
        elif kind == LOST_ROW:
            dom, vid = key >> 16, key & 0xFFFF
            # the payload's vCPU is only looked up (created) at LOST_END
            if c.phase == 0:
                model.lost_start(p, order)
            else:
                model.lost_end(p, dom, vid, order)
        p.last_tsc = order
        if not merger.advance(c):
            model.end_of_pcpu(p)


# ---- decoding -------------------------------------------------------------------


@dataclass(slots=True)
class Rows:
    """Every decoded record, in file order (the window it is in follows from ``off``)."""

    tsc: list[int] = field(default_factory=list)
    #: change / continue: dom << 16 | vcpu; lost: the payload's vCPU, the same way
    ids: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    old: list[int] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    #: lost: the TSC of the first dropped record
    aux: list[int] = field(default_factory=list)
    off: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tsc)

    def add(self, tsc: int, ids: int, kind: int, off: int, old: int = 0, new: int = 0,
            aux: int = 0) -> None:
        for column, value in ((self.tsc, tsc), (self.ids, ids), (self.kind, kind),
                              (self.off, off), (self.old, old), (self.new, new),
                              (self.aux, aux)):
            column.append(value)


class Decoder:
    """Windows and records of a whole xentrace file, with the reader's validation.

    A record without a TSC takes its pcpu's last TSC (none before the first one).
    Strict mode stops at the first broken record with a one-line error; lenient
    mode skips it (a broken window header: on to the next plausible header).  A
    window or record cut short by the end of the data ends the decoding."""

    def __init__(self, path: str, data: bytes, lenient: bool) -> None:
        self.path = path
        self.data = data
        self.lenient = lenient
        self.last_tsc: dict[int, int] = {}
        self.out = Rows()

    def rows(self) -> Rows:
        off = 0
        while True:
            window = self._window(off)
            if window is None:
                break
            pcpu, off, end = window
            off = self._records(pcpu, off, end)
            if off is None:
                break
        if not self.out.tsc:
            raise InputError(self.path, "no trace records")
        return self.out

    def _header_error(self, off: int) -> tuple[str, str] | None:
        word, pcpu, size = struct.unpack_from("<IiI", self.data, off)
        if word != CPU_CHANGE_HEADER:
            return ("window header is not a TRC_TRACE_CPU_CHANGE record (0x2001f003)",
                    f"header word 0x{word:08x}")
        if not 0 <= pcpu < MAX_PCPUS:
            return "impossible pcpu number in a window header", f"pcpu {pcpu}"
        if size % 4 or size > MAX_WINDOW_BYTES:
            return ("impossible window size in a window header",
                    f"window size {size} bytes (must be a multiple of 4, at most 1 GiB)")
        return None

    def _window(self, off: int) -> tuple[int, int, int] | None:
        """(pcpu, first record offset, window end) of the header at off; None: data ended."""
        if len(self.data) - off < 12:
            return None
        error = self._header_error(off)
        if error is not None:
            if not self.lenient:
                raise InputError(self.path, error[0], offset=off, record=error[1])
            off += 4
            while len(self.data) - off >= 12 and self._header_error(off) is not None:
                off += 4
            if len(self.data) - off < 12:
                return None
        _, pcpu, size = struct.unpack_from("<IiI", self.data, off)
        return pcpu, off + 12, off + 12 + size

    def _fail(self, off: int, reason: str, record: str) -> InputError:
        return InputError(self.path, reason, offset=off, record=record)

    @staticmethod
    def _describe(word: int) -> str:
        return (f"event 0x{word & EVENT_MASK:07x}, {(word >> 28) & 7} data words, "
                f"TSC {'yes' if word >> 31 else 'no'}")

    def _records(self, pcpu: int, off: int, end: int) -> int | None:
        """Decode one window's records; the offset after it, None when the data ended."""
        while off < end:
            if len(self.data) - off < 4:
                return None
            word = struct.unpack_from("<I", self.data, off)[0]
            has_tsc, n_extra = word >> 31, (word >> 28) & 7
            size = 4 + 8 * has_tsc + 4 * n_extra
            if off + size > end:
                if not self.lenient:
                    raise self._fail(off, "record runs past the end of its window",
                                     f"{self._describe(word)}, {end - off} bytes left in "
                                     "the window")
                return end
            if len(self.data) - off < size:
                return None
            self._record(pcpu, off, word, has_tsc, n_extra)
            off += size
        return end

    def _record(self, pcpu: int, off: int, word: int, has_tsc: int, n_extra: int) -> None:
        event = word & EVENT_MASK
        group = (event >> 16) & 0xFFF
        if group == 0 or group & (group - 1):
            if not self.lenient:
                raise self._fail(off, "record class is not one-hot", self._describe(word))
            return
        tsc = self.last_tsc.get(pcpu, -1)
        if has_tsc:
            stamp = struct.unpack_from("<Q", self.data, off + 4)[0]
            if stamp >= 1 << 63:
                stamp -= 1 << 64
            if tsc >= 0 and stamp < tsc:
                if not self.lenient:
                    raise self._fail(off, "TSC goes backwards within a pcpu's records",
                                     f"event 0x{event:07x}; previous TSC on this pcpu {tsc}")
                stamp = tsc
            tsc = self.last_tsc[pcpu] = stamp
        words = struct.unpack_from(f"<{n_extra}I", self.data, off + 4 + 8 * has_tsc)
        if (event & RUNSTATE_CHANGE_BITS) == RUNSTATE_CHANGE or event == CONTINUE_RUNNING:
            self._runstate(off, word, event, words, tsc)
        elif event == LOST_RECORDS:
            self._lost(off, word, words, tsc, has_tsc)
        elif event == WRAP_BUFFER:
            if has_tsc:
                self.out.add(tsc, 0, WRAP, off)
        elif tsc >= 0:
            self.out.add(tsc, event, OTHER, off)

    def _runstate(self, off: int, word: int, event: int, words: tuple[int, ...],
                  tsc: int) -> None:
        change = event != CONTINUE_RUNNING
        old, new = ((event >> 8) & 0xF, (event >> 4) & 0xF) if change else (0, 0)
        reason = None
        if not words:
            reason = "scheduler record without TSC or without its data word"
        elif old > 3 or new > 3:
            reason = "TRC_SCHED_RUNSTATE_CHANGE with a state above 3"
        elif tsc < 0:
            reason = "scheduler record without TSC or without its data word"
        if reason is not None:
            if not self.lenient:
                raise self._fail(off, reason, self._describe(word))
            return
        self.out.add(tsc, words[0], CHANGE if change else CONTINUE, off, old, new)

    def _lost(self, off: int, word: int, words: tuple[int, ...], tsc: int,
              has_tsc: int) -> None:
        if len(words) != 4 or not has_tsc:
            if not self.lenient:
                raise self._fail(off, "TRC_LOST_RECORDS without TSC or without its 4 data "
                                 "words", self._describe(word))
            return
        # words: count, dom (low half) | vcpu (high half), first TSC (low, high)
        first = words[2] | words[3] << 32
        if first >= 1 << 63:
            first -= 1 << 64
        if tsc <= first:
            if not self.lenient:
                raise self._fail(off, "TRC_LOST_RECORDS whose TSC is not after its "
                                 "first_tsc", f"TSC {tsc}, first_tsc {first}")
            return
        self.out.add(tsc, (words[1] & 0xFFFF) << 16 | words[1] >> 16, LOST_ROW, off, aux=first)
