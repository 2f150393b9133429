"""Test-only reference: the record-by-record Python emulation of xenalyze's rules.

This is the implementation ``runstate.analysis.xenalyze`` had before it moved
to C (``runstate.analysis._xenalyze``).  It keeps every decoded record and
every interval in memory and is slow; it exists so the C port can be checked
against it on many random traces (``tests/xen/test_xenalyze_port.py``).
"""

from __future__ import annotations

import heapq
import io
import struct
from dataclasses import dataclass, field, fields
from typing import IO

import numpy as np
import numpy.typing as npt

from runstate.errors import InputError
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.constants import (
    CPU_CHANGE_HEADER,
    DEFAULT_CPU_HZ,
    IDLE_DOMAIN,
    MAX_PCPUS,
    MAX_WINDOW_BYTES,
)
from runstate.sources.xentrace.walk import Kind, Records, Walker

# vCPU states (xenalyze's, in its numbering of the public ones plus internal ones)
RUNNING, RUNNABLE, BLOCKED, OFFLINE, LOST, INIT, QUEUED = range(7)

#: xenalyze's domain runstate labels, in its print order, with the seed's names
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
    #: seed state name (full_run, ..., lost) -> figures; only states with count > 0
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
    """The vCPU / pcpu / domain state machine of xenalyze (§6)."""

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
        """A vCPU in init: only a move into running makes it visible (§6.4 rule 1)."""
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

    The walker has already validated them (or, with --lenient, skipped broken
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
    """xenalyze's pcpu discovery and smallest-order-TSC-first merge (§5).

    Like xenalyze, a cursor processes the window headers it meets one at a
    time, in merge order, with the order key of its pcpu's last record (0 for a
    pcpu not started yet).  A pcpu activated on the way therefore processes
    its header at once and then its records that are older than the key of
    the cursor that found it, before that cursor passes the next window."""

    def __init__(self, windows: list[tuple[int, int, int]], rows: Records) -> None:
        self.windows = windows
        self.rows = rows
        starts = np.array([w[0] for w in windows], np.int64)
        self.first_row = np.searchsorted(rows.off, starts).tolist() + [len(rows)]
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
        if r.kind[c.row] == Kind.LOST and c.phase == 0:
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
        if self.rows.kind[c.row] == Kind.LOST and c.phase == 0:
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
    walker = Walker(path, io.BytesIO(data), lenient=options.lenient, other_rows=True,
                    chunk_rows=options.chunk_rows)
    rows = _concat(path, list(walker.chunks()))
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


def _replay(model: _Model, merger: _Merger, rows: Records) -> tuple[int | None, int | None]:
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
        kind = int(rows.kind[i])
        off = int(rows.off[i])
        key = int(rows.key[i]) & 0xFFFFFFFF
        if kind in (Kind.CHANGE, Kind.CONTINUE):
            model.runstate(p, key >> 16, key & 0xFFFF, int(rows.old[i]), int(rows.new[i]),
                           kind == Kind.CONTINUE, order, off)
        elif kind == Kind.LOST:
            dom, vid = key >> 16, key & 0xFFFF
            # the payload's vCPU is only looked up (created) at LOST_END
            if c.phase == 0:
                model.lost_start(p, order)
            else:
                model.lost_end(p, dom, vid, order)
        p.last_tsc = order
        if not merger.advance(c):
            model.end_of_pcpu(p)


def _concat(path: str, chunks: list[Records]) -> Records:
    if not chunks:
        raise InputError(path, "no trace records")
    return Records(*(np.concatenate([getattr(c, f.name) for c in chunks])
                     for f in fields(Records)))
