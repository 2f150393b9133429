"""The xentrace reader: per-pcpu record streams merged by TSC into member event batches.

Members are vCPUs: domain key ``str(domid)``, member key ``str(vcpu)``, member
name ``d<dom>v<vcpu>``.  The idle domain 32767 is registered like any other
but tagged ``{"kind": "host-idle"}`` (its vCPU n is pcpu n's idle loop), so
reports show it as host idleness.  Ticks are TSC cycles (``info.cpu_hz``).

Exact mode rules (SPEC):

* ``TRC_SCHED_RUNSTATE_CHANGE`` is one row (old/new from the event id).
* ``TRC_SCHED_CONTINUE_RUNNING`` is no state change, so it is dropped, except
  when it is a vCPU's first record of an epoch (the trace start, or the end of
  a lost-data window): it is then kept as a ``running -> running`` row, whose
  old state tells the engine the vCPU was running since the epoch start.  The
  engine counts such rows as ``no_change_events``.
* ``TRC_LOST_RECORDS`` becomes two marker rows, ``LOSS_BEGIN`` at its
  first_tsc and ``LOSS_END`` at its own TSC.

Merging: within a pcpu, records are time-ordered; across pcpus, windows
interleave and a later window can hold older records.  Rows are buffered and
released up to a *watermark*, the smallest TSC any pcpu that still has data
to come can produce: for a file, the window index tells which pcpus have
windows left and where unseen pcpus start; for a stream, every pcpu seen in
the last ``2 x pcpus`` windows counts (xentrace writes every pcpu with new
data at each poll, so a pcpu absent for two rounds had nothing buffered), and
at most ``MAX_PENDING`` rows are held.  A row older than rows already released
(only possible in streams, or in corrupt files) is moved to the release time
and counted as ``late_records``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import numpy as np
import numpy.typing as npt

from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END
from runstate.sources.base import FormatInfo, ReadOptions, SourceInfo
from runstate.sources.xentrace import _walk
from runstate.sources.xentrace.constants import (
    CPU_CHANGE_HEADER,
    DEFAULT_CPU_HZ,
    IDLE_DOMAIN,
    MAX_PCPUS,
    MAX_WINDOW_BYTES,
)
from runstate.sources.xentrace.walk import Kind, PcpuIndex, Records, Stat, Walker

#: stream mode: most rows held back waiting for slow pcpus
MAX_PENDING = 1 << 21
#: how many windows a sniff validates
SNIFF_WINDOWS = 4

_I64_MAX = np.iinfo(np.int64).max


def member_name(dom: int, vcpu: int) -> str:
    return f"d{dom}v{vcpu}"


def register_vcpu(registry: Registry, dom: int, vcpu: int) -> int:
    """Member index of a vCPU, registering it (and tagging the idle domain)."""
    if dom == IDLE_DOMAIN and registry.find_domain(str(dom)) is None:
        d = registry.domain(str(dom), "idle")
        registry.domains[d].tags["kind"] = "host-idle"
    return registry.member(str(dom), str(vcpu), member_name(dom, vcpu))


class _Members:
    """Maps ``dom << 16 | vcpu`` keys to member indices with a sorted lookup table."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.keys = np.zeros(0, np.int64)
        self.index = np.zeros(0, np.int32)

    def lookup(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
        pos, hit = self._find(keys)
        if not bool(hit.all()):
            missing = keys[~hit]
            unique, first = np.unique(missing, return_index=True)
            for key in unique[np.argsort(first)].tolist():
                register_vcpu(self.registry, key >> 16, key & 0xFFFF)
            self._rebuild(unique)
            pos, hit = self._find(keys)
        return self.index[pos]

    def _find(self, keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.intp],
                                                          npt.NDArray[np.bool_]]:
        if self.keys.shape[0] == 0:
            return np.zeros(keys.shape[0], np.intp), np.zeros(keys.shape[0], bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.shape[0] - 1)
        return pos, self.keys[pos] == keys

    def _rebuild(self, new: npt.NDArray[np.int64]) -> None:
        keys = np.concatenate([self.keys, new])
        index = np.array([self.registry.find_member(str(k >> 16), str(k & 0xFFFF))
                          for k in keys.tolist()], np.int32)
        order = np.argsort(keys, kind="stable")
        self.keys, self.index = keys[order], index[order]


class _Pending:
    """Rows waiting for the watermark, as columns."""

    def __init__(self) -> None:
        self.time = np.zeros(0, np.int64)
        self.key = np.zeros(0, np.int64)
        self.kind = np.zeros(0, np.int8)
        self.old = np.zeros(0, np.int8)
        self.new = np.zeros(0, np.int8)

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def add(self, rec: Records) -> None:
        """Append a chunk's member rows and loss markers, then re-sort by time."""
        sel = rec.kind <= Kind.CONTINUE
        lost = np.flatnonzero(rec.kind == Kind.LOST)
        n_lost = lost.shape[0]
        marks_t = np.concatenate([rec.aux[lost], rec.tsc[lost]])
        marks_k = np.concatenate([np.full(n_lost, LOSS_BEGIN, np.int8),
                                  np.full(n_lost, LOSS_END, np.int8)])
        zeros = np.zeros(2 * n_lost, np.int8)
        self.time = np.concatenate([self.time, rec.tsc[sel], marks_t])
        self.key = np.concatenate([self.key, rec.key[sel], np.full(2 * n_lost, -1, np.int64)])
        self.kind = np.concatenate([self.kind, rec.kind[sel], marks_k])
        self.old = np.concatenate([self.old, rec.old[sel], zeros])
        self.new = np.concatenate([self.new, rec.new[sel], zeros])
        order = np.argsort(self.time, kind="stable")
        if not bool((order[1:] > order[:-1]).all()):
            self.time, self.key, self.kind = self.time[order], self.key[order], self.kind[order]
            self.old, self.new = self.old[order], self.new[order]

    def take(self, upto: int) -> tuple[npt.NDArray[np.generic], ...]:
        """Remove and return the rows with ``time <= upto``."""
        cut = int(np.searchsorted(self.time, upto, side="right"))
        cols = (self.time, self.key, self.kind, self.old, self.new)
        out = tuple(c[:cut] for c in cols)
        self.time, self.key, self.kind, self.old, self.new = (c[cut:] for c in cols)
        return out


class XentraceSource:
    """A xentrace file (re-readable, mmap) or stream (stdin, one pass)."""

    def __init__(self, path: str, stream: IO[bytes] | None, options: ReadOptions) -> None:
        self.path = path
        self._stream = stream
        self._options = options
        self.registry = Registry()
        self.rereadable = stream is None
        cpu_hz = options.cpu_hz
        notes = []
        if cpu_hz is None:
            cpu_hz = DEFAULT_CPU_HZ
            notes.append("cpu_hz not given (--cpu-hz); assumed 2.4 GHz like xenalyze")
        self.info = SourceInfo(format="xentrace", path=path, clock="tsc", cpu_hz=cpu_hz,
                               cpu_hz_assumed=options.cpu_hz is None, notes=notes)
        self._base_notes = list(notes)

    def batches(self) -> Iterator[EventBatch]:
        """Yield time-sorted batches; each call reads the input from the start."""
        self.info.anomalies.clear()
        self.info.notes[:] = self._base_notes
        walker = Walker(self.path, self._stream, lenient=self._options.lenient,
                        chunk_rows=self._options.chunk_rows)
        index = walker.index() if self._stream is None else None
        merge = _Merge(self, walker, index)
        for rec in walker.chunks():
            merge.add(rec)
            yield from merge.release(final=False)
        yield from merge.release(final=True)
        self._finish(walker, merge)

    def _finish(self, walker: Walker, merge: _Merge) -> None:
        stats = walker.stats
        info = self.info
        first, last = merge.first_time, merge.last_time
        if first is not None and last is not None:
            info.origin = first
            info.start_ns, info.end_ns = first, last
        for name, stat in (("lost_records", Stat.LOST_COUNT), ("lost_record_markers", Stat.LOST),
                           ("wrap_records", Stat.WRAP), ("corrupt_records_skipped", Stat.BAD),
                           ("window_headers_resynced", Stat.RESYNC)):
            if int(stats[stat]):
                info.count(name, int(stats[stat]))
        if merge.late:
            info.count("late_records", merge.late)
        if walker.truncated_at is not None:
            info.count("truncated_final_window")
            info.notes.append(f"the last window runs past the end of the input at byte "
                              f"{walker.truncated_at}; read up to the last whole record")


class _Merge:
    """Merges decoded chunks across pcpus and turns them into event batches."""

    def __init__(self, source: XentraceSource, walker: Walker, index: PcpuIndex | None) -> None:
        self.source = source
        self.walker = walker
        self.index = index
        self.pending = _Pending()
        self.members = _Members(source.registry)
        self.seen = np.zeros(0, np.uint8)
        self.depth = np.zeros(1, np.int64)
        self.released = np.iinfo(np.int64).min
        self.first_time: int | None = None
        self.last_time: int | None = None
        self.late = 0
        #: stream mode: window count at which each pcpu last had records
        self.last_window = np.full(MAX_PCPUS, -1, np.int64)

    def add(self, rec: Records) -> None:
        timed = rec.kind <= Kind.LOST
        if bool(timed.any()):
            t = rec.tsc[timed]
            lo = int(min(int(t.min()), int(rec.aux[rec.kind == Kind.LOST].min(initial=_I64_MAX))))
            hi = int(t.max())
            self.first_time = lo if self.first_time is None else min(self.first_time, lo)
            self.last_time = hi if self.last_time is None else max(self.last_time, hi)
        if self.index is None and len(rec):
            self.last_window[np.unique(rec.pcpu)] = int(self.walker.stats[Stat.WINDOWS])
        self.pending.add(rec)

    def _watermark(self) -> int:
        ptsc = self.walker.pcpu_tsc
        pos = self.walker.position
        if self.index is not None:
            bounds = [int(ptsc[p]) if int(ptsc[p]) >= 0 else self.index.first_tsc.get(p, 0)
                      for p, end in self.index.last_end.items() if end > pos]
            return min(bounds) if bounds else _I64_MAX
        seen = np.flatnonzero(self.last_window >= 0)
        if seen.shape[0] == 0:
            return np.iinfo(np.int64).min
        windows = int(self.walker.stats[Stat.WINDOWS])
        recent = seen[self.last_window[seen] >= windows - 2 * seen.shape[0]]
        mark = int(ptsc[recent].min()) if recent.shape[0] else _I64_MAX
        if len(self.pending) > MAX_PENDING:
            mark = max(mark, int(self.pending.time[len(self.pending) // 2]))
        return mark

    def release(self, final: bool) -> Iterator[EventBatch]:
        mark = _I64_MAX if final else self._watermark()
        if len(self.pending) == 0 or int(self.pending.time[0]) > mark:
            return
        time, key, kind, old, new = self.pending.take(mark)
        yield from self._batches(time, key, kind, old, new)  # type: ignore[arg-type]

    def _batches(self, time: npt.NDArray[np.int64], key: npt.NDArray[np.int64],
                 kind: npt.NDArray[np.int8], old: npt.NDArray[np.int8],
                 new: npt.NDArray[np.int8]) -> Iterator[EventBatch]:
        late = time < self.released
        if bool(late.any()):
            self.late += int(late.sum())
            time = np.maximum(time, self.released)
        self.released = int(time[-1])
        marker = key < 0
        member = np.full(time.shape[0], -1, np.int32)
        if not bool(marker.all()):
            member[~marker] = self.members.lookup(key[~marker])
        n_members = self.source.registry.n_members
        if self.seen.shape[0] < n_members:
            grown = np.zeros(max(n_members, 2 * self.seen.shape[0]), np.uint8)
            grown[: self.seen.shape[0]] = self.seen
            self.seen = grown
        new = np.where(marker, kind, new).astype(np.int8)
        flag = np.where(marker, kind, np.minimum(kind, 1)).astype(np.int8)
        _walk.keep(member, flag, self.seen, self.depth)
        sel = flag >= 0
        batch = EventBatch(np.ascontiguousarray(time[sel]), np.ascontiguousarray(member[sel]),
                           np.ascontiguousarray(old[sel]), np.ascontiguousarray(new[sel]))
        chunk = self.source._options.chunk_rows
        for start in range(0, len(batch), chunk):
            yield batch.slice(start, start + chunk)


class _XentraceReader:
    FORMAT = FormatInfo("xentrace", "Xen binary trace written by xentrace (per-pcpu windows)",
                        500)

    def sniff(self, path: str, head: bytes) -> bool:
        """No magic number: accept only if the first windows are well-formed."""
        return sniff_windows(head)

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions) -> XentraceSource:
        return XentraceSource(path, stream, options)


def sniff_windows(head: bytes) -> bool:
    """True if ``head`` starts with up to SNIFF_WINDOWS well-formed windows of records."""
    off, seen = 0, 0
    while seen < SNIFF_WINDOWS and len(head) - off >= 12:
        hdr, pcpu, size = (int.from_bytes(head[off + i:off + i + 4], "little")
                           for i in (0, 4, 8))
        if hdr != CPU_CHANGE_HEADER or pcpu >= MAX_PCPUS or size % 4 or size > MAX_WINDOW_BYTES:
            return False
        if not _records_ok(head, off + 12, min(off + 12 + size, len(head))):
            return False
        off += 12 + size
        seen += 1
    return seen > 0


def _records_ok(head: bytes, off: int, end: int) -> bool:
    """Records in [off, end) have one-hot classes (the last may be cut by ``end``)."""
    while end - off >= 4:
        hdr = int.from_bytes(head[off:off + 4], "little")
        cls = (hdr >> 16) & 0xFFF
        if cls == 0 or cls & (cls - 1):
            return False
        off += 4 + 8 * (hdr >> 31) + 4 * ((hdr >> 28) & 7)
    return True


XENTRACE_READER = _XentraceReader()
