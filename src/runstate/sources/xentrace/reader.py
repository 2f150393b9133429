"""The xentrace reader: per-pcpu record streams merged by TSC into member event batches.

Members are vCPUs: domain key ``str(domid)``, member key ``str(vcpu)``, member
name ``d<dom>v<vcpu>``.  The idle domain 32767 is registered like any other
but tagged ``{"kind": "host-idle"}`` (its vCPU n is pcpu n's idle loop), so
reports show it as host idleness.  Ticks are TSC cycles (``info.cpu_hz``).

Exact mode rules (docs/semantics.md, docs/xentrace.md):

* ``TRC_SCHED_RUNSTATE_CHANGE`` is one row (old/new from the event id).
* ``TRC_SCHED_CONTINUE_RUNNING`` is no state change, so it is dropped, except
  when it is a vCPU's first record since the trace start or since a lost-data
  window began or ended: it is then kept as a ``running -> running`` row, whose
  old state tells the engine the vCPU was running since the epoch start (and,
  inside a lost window, that the vCPU exists).  The engine counts such rows as
  ``no_change_events``.
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

Exact mode on a file goes through ``fastpath`` (both passes in C) when the
file allows it; the pipeline asks for that with :meth:`XentraceSource.first_pass`,
and, to have every row accounted in C, with :meth:`XentraceSource.account`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.formats import XENTRACE
from runstate.sources.xentrace import _walk, fastpath
from runstate.sources.xentrace.constants import (
    DEFAULT_CPU_HZ,
    IDLE_DOMAIN,
    MAX_PCPUS,
)
from runstate.sources.xentrace.sniff import sniff_windows
from runstate.sources.xentrace.walk import (
    IDS_MASK,
    Kind,
    PcpuIndex,
    Records,
    Stat,
    Walker,
    is_marker,
    packed_marker,
)


class AccountingEngine(Protocol):
    """What :meth:`XentraceSource.account` needs of the pipeline's engine (the
    engine layer comes after the sources, so this layer names it by shape)."""

    @property
    def start_ticks(self) -> int | None: ...

    def adopt(self, fill: Callable[[tuple[Any, ...]], bool]) -> bool: ...

#: records decoded per step: small enough for the columns to stay in cache
#: (measured: 128 Ki rows beat 256 Ki by 10 % on the benchmark trace)
DECODE_ROWS = 1 << 17
#: stream mode: most rows held back waiting for slow pcpus
MAX_PENDING = 1 << 21
#: stream mode: a pcpu with no records for this many polling rounds no longer
#: holds back the others
STALE_ROUNDS = 4

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
    """Maps ``dom << 16 | vcpu`` keys to member indices (hash table probed in C)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.tkeys = np.full(64, -1, np.int64)
        self.tvals = np.full(64, -1, np.int32)
        self.n = 0

    def register(self, packed: npt.NDArray[np.int64]) -> None:
        """Register the vCPUs of unknown packed keys (markers skipped), in order of
        appearance."""
        keys = packed & IDS_MASK
        keys[is_marker(packed)] = -1
        out = np.empty(keys.shape[0], np.int32)
        if _walk.lookup(keys, out, self.tkeys, self.tvals) == 0:
            return
        missing = keys[out == -2]
        unique, first = np.unique(missing, return_index=True)
        for key in unique[np.argsort(first)].tolist():
            self._insert(key, register_vcpu(self.registry, key >> 16, key & 0xFFFF))

    def _insert(self, key: int, member: int) -> None:
        if 2 * (self.n + 1) > self.tkeys.shape[0]:
            old = [(int(k), int(v)) for k, v in zip(self.tkeys, self.tvals, strict=True)
                   if k >= 0]
            self.tkeys = np.full(2 * self.tkeys.shape[0], -1, np.int64)
            self.tvals = np.full(self.tkeys.shape[0], -1, np.int32)
            self.n = 0
            for k, v in old:
                self._insert(k, v)
        mask = self.tkeys.shape[0] - 1
        h = ((key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 20
        while int(self.tkeys[h & mask]) >= 0:
            h += 1
        self.tkeys[h & mask] = key
        self.tvals[h & mask] = member
        self.n += 1


class _Pending:
    """Rows waiting for the watermark: time and packed key (see ``walk.Records``)."""

    def __init__(self) -> None:
        self.time = np.zeros(0, np.int64)
        self.packed = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def add(self, rec: Records) -> None:
        """Add a chunk's member rows and loss markers, keeping the rows sorted by time.

        A stable sort: equal times keep file order.  Each pcpu's rows form long
        sorted runs, which numpy's stable sort (timsort) merges in linear time.
        """
        lost = np.flatnonzero(rec.kind == Kind.LOST)
        if lost.shape[0] or bool((rec.kind > Kind.LOST).any()):
            n = lost.shape[0]
            sel = rec.kind <= Kind.CONTINUE
            time = [rec.tsc[sel], rec.aux[lost], rec.tsc[lost]]
            packed = [rec.key[sel], np.full(n, packed_marker(LOSS_BEGIN), np.int64),
                      np.full(n, packed_marker(LOSS_END), np.int64)]
        else:
            time, packed = [rec.tsc], [rec.key]
        if len(self):
            time.insert(0, self.time)
            packed.insert(0, self.packed)
        all_time = time[0] if len(time) == 1 else np.concatenate(time)
        all_packed = packed[0] if len(packed) == 1 else np.concatenate(packed)
        order = np.argsort(all_time, kind="stable")
        self.time, self.packed = all_time[order], all_packed[order]

    def take(self, upto: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Remove and return the rows with ``time <= upto``."""
        cut = int(np.searchsorted(self.time, upto, side="right"))
        out = self.time[:cut], self.packed[:cut]
        self.time, self.packed = self.time[cut:], self.packed[cut:]
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
        #: set by first_pass(): the second pass then merges in C too; member m is
        #: the plan's vCPU _plan_order[m]
        self._plan: fastpath.Plan | None = None
        self._plan_order = np.zeros(0, np.intp)
        #: what the last whole read counted (anomalies, notes)
        self._counted: tuple[dict[str, int], list[str]] | None = None

    def first_pass(self, progress: Callable[[int], None] | None = None
                   ) -> tuple[npt.NDArray[np.int8], int, int] | None:
        """Exact mode's first pass as one C scan, or None if the input needs the generic one.

        Returns the state of every member before its first record (one row: the
        fast path takes no file with lost records) and the times of the first
        and last rows the second pass will yield; leaves ``info`` as reading all
        batches would.  Later calls of :meth:`batches` merge in C as well.
        """
        self._plan = None
        if self._stream is not None:
            return None
        plan = fastpath.scan(self.path, self._options.lenient, progress)
        if plan is None:
            return None
        members = np.array([register_vcpu(self.registry, key >> 16, key & 0xFFFF)
                            for key in plan.keys.tolist()], np.intp)
        order = np.full(self.registry.n_members, -1, np.intp)
        order[members] = np.arange(members.shape[0])
        if bool((order < 0).any()):
            return None  # members this file does not name: let the generic path number them
        self._plan, self._plan_order = plan, order
        self._set_origin(plan.pcpu_first)
        self._finish(plan.stats, plan.pcpu_tsc, (plan.first_time, plan.last_time), 0,
                     plan.truncated_at)
        states = np.full((1, self.registry.n_members), -1, np.int8)
        states[0, members] = plan.initial
        return states, plan.first_time, plan.last_row_time

    def account(self, engine: AccountingEngine, end_ticks: int | None) -> int | None:
        """Exact mode's second pass with every row accounted in C as it is merged,
        leaving ``engine`` (as the pipeline set it up after :meth:`first_pass`) in the
        state feeding it every batch would: the rows accounted, or None if this read
        cannot (the engine is then untouched, to be fed batches).

        Only a whole read can: from the first row (the engine's start), with every
        row before ``end_ticks``, and no intervals (``Engine.adopt``).
        """
        plan = self._plan
        if plan is None or engine.start_ticks != plan.first_time or (
                end_ticks is not None and end_ticks < plan.last_row_time):
            return None
        rows = fastpath.account(plan, engine.adopt)
        if rows is not None:
            self._start_reading()  # what the first pass counted, as batches() restores it
        return rows

    def batches(self) -> Iterator[EventBatch]:
        """Yield time-sorted batches; each call reads the input from the start."""
        self._start_reading()
        if self._plan is not None:
            self._plan.job.close()  # rows go to the engine as batches: not accounted in C
            # the first pass counted all there is to count (restored just now)
            yield from fastpath.batches(self.path, self._plan, self._plan_order,
                                        self._options.lenient, self._options.chunk_rows)
            return
        walker = Walker(self.path, self._stream, lenient=self._options.lenient,
                        chunk_rows=min(self._options.chunk_rows, DECODE_ROWS))
        index = walker.index() if self._stream is None else None
        if index is not None:
            self._set_origin(np.array(list(index.first_tsc.values()), np.int64))
        merge = _Merge(self, walker, index)
        for rec in walker.chunks():
            merge.add(rec)
            yield from merge.release(final=False)
        yield from merge.release(final=True)
        self._finish(walker.stats, walker.pcpu_tsc, (merge.first_time, merge.last_time),
                     merge.late, walker.truncated_at)

    def _start_reading(self) -> None:
        """Counts start afresh, from what the last whole read counted: the same file
        counts the same, and a reader that stops early (a window's end) still has
        them to report."""
        self.info.anomalies.clear()
        self.info.notes[:] = self._base_notes
        if self._counted is not None:
            self.info.anomalies.update(self._counted[0])
            self.info.notes[:] = self._counted[1]

    def _set_origin(self, pcpu_first: npt.NDArray[np.int64]) -> None:
        """Seconds count from the first timestamp of any pcpu's data (as the window
        index gives it), known before any batch so reports can use it at once."""
        known = pcpu_first[pcpu_first >= 0]
        if known.shape[0]:
            self.info.origin = int(known.min())

    def _finish(self, stats: npt.NDArray[np.int64], pcpu_tsc: npt.NDArray[np.int64],
                span: tuple[int | None, int | None], late: int,
                truncated_at: int | None) -> None:
        info = self.info
        info.anomalies.clear()
        info.notes[:] = self._base_notes
        first, last = span
        if first is not None and last is not None:
            info.origin = first if info.origin is None else min(info.origin, first)
            info.start_ticks, info.end_ticks = first, last
        for name, stat in (("lost_records", Stat.LOST_COUNT), ("lost_record_markers", Stat.LOST),
                           ("wrap_records", Stat.WRAP), ("corrupt_records_skipped", Stat.BAD),
                           ("window_headers_resynced", Stat.RESYNC)):
            if int(stats[stat]):
                info.count(name, int(stats[stat]))
        idle = self.registry.find_domain(str(IDLE_DOMAIN))
        if idle is not None:
            # the idle domain has one vCPU per pcpu: every pcpu that wrote a record
            seen = int((pcpu_tsc >= 0).sum())
            self.registry.domains[idle].expected_members = seen
        if late:
            info.count("late_records", late)
        if truncated_at is not None:
            info.count("truncated_final_window")
            info.notes.append(f"the last window runs past the end of the input at byte "
                              f"{truncated_at}; read up to the last whole record")
        self._counted = (dict(info.anomalies), list(info.notes))


class _Merge:
    """Merges decoded chunks across pcpus and turns them into event batches."""

    def __init__(self, source: XentraceSource, walker: Walker, index: PcpuIndex | None) -> None:
        self.source = source
        self.walker = walker
        self.index = index
        self.pending = _Pending()
        self.members = _Members(source.registry)
        self.seen = np.zeros(0, np.uint8)
        #: loss depth, last released time, late rows (updated by _walk.emit)
        self.state = np.array([0, np.iinfo(np.int64).min, 0], np.int64)
        self.first_time: int | None = None
        self.last_time: int | None = None
        #: stream mode: polling round in which each pcpu last had records
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
            self.last_window[np.unique(rec.pcpu)] = int(self.walker.stats[Stat.ROUNDS])
        self.pending.add(rec)

    def _watermark(self) -> int:
        ptsc = self.walker.pcpu_tsc
        pos = self.walker.position
        if self.index is not None:
            bounds = [int(ptsc[p]) if int(ptsc[p]) >= 0 else self.index.first_tsc.get(p, 0)
                      for p, end in self.index.last_end.items() if end > pos]
            return min(bounds) if bounds else _I64_MAX
        seen = np.flatnonzero(self.last_window >= 0)
        rounds = int(self.walker.stats[Stat.ROUNDS])
        if rounds == 0 and len(self.pending) <= MAX_PENDING:
            # still in the first polling round: pcpus not seen yet may hold older records
            return np.iinfo(np.int64).min
        recent = seen[self.last_window[seen] >= rounds - STALE_ROUNDS]
        mark = int(ptsc[recent].min()) if recent.shape[0] else _I64_MAX
        if len(self.pending) > MAX_PENDING:
            mark = max(mark, int(self.pending.time[len(self.pending) // 2]))
        return mark

    def release(self, final: bool) -> Iterator[EventBatch]:
        mark = _I64_MAX if final else self._watermark()
        if len(self.pending) == 0 or int(self.pending.time[0]) > mark:
            return
        yield from self._batches(*self.pending.take(mark))

    def _batches(self, time: npt.NDArray[np.int64],
                 packed: npt.NDArray[np.int64]) -> Iterator[EventBatch]:
        n = time.shape[0]
        out = (np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.int8),
               np.empty(n, np.int8))
        rows = (time, packed)
        while True:
            self._grow_seen()
            table = (self.members.tkeys, self.members.tvals)
            k = _walk.emit(rows, table, self.seen, self.state, out)
            if k >= 0:
                break
            self.members.register(packed)
        batch = EventBatch(*(c[:k] for c in out))  # type: ignore[arg-type]
        if self.source.info.origin is None and k:
            self.source.info.origin = int(batch.time[0])
        chunk = self.source._options.chunk_rows
        for start in range(0, len(batch), chunk):
            yield batch.slice(start, start + chunk)

    def _grow_seen(self) -> None:
        n_members = self.source.registry.n_members
        if self.seen.shape[0] < n_members:
            grown = np.zeros(max(n_members, 2 * self.seen.shape[0]), np.uint8)
            grown[: self.seen.shape[0]] = self.seen
            self.seen = grown

    @property
    def late(self) -> int:
        return int(self.state[2])


class _XentraceReader:
    FORMAT = XENTRACE

    def sniff(self, path: str, head: bytes) -> bool:
        """No magic number: accept only if the first windows are well-formed."""
        return sniff_windows(head)

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions) -> XentraceSource:
        return XentraceSource(path, stream, options)


XENTRACE_READER = _XentraceReader()
