"""Decoding tracefs ring-buffer pages (``trace_pipe_raw``) into :class:`SchedEvents`.

A raw page is ``u64 timestamp; u64 commit; data[]`` (``events/header_page``)
and holds one CPU's events in time order; ``_pagewalk`` (C) lists each data
event's timestamp and payload position.  Payloads are tracepoint records whose
field offsets come from the format files saved with the trace, so this module
reads them with numpy gathers, one event type at a time, never per event in
Python.

Lost data: a page whose commit word has bit 31 set follows a gap (the kernel
overwrote unread events); the gap runs from the CPU's previous event to the
page's first event and becomes a :class:`LossWindow`.

Per-CPU streams are each sorted; :func:`merge_streams` merges them by time
with memory bounded by one chunk per CPU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runstate._abi import check_kernel
from runstate.errors import InputError
from runstate.sources.linux import _pagewalk
from runstate.sources.linux._pagewalk import walk
from runstate.sources.linux.schedevents import SchedEvents, SchedKind
from runstate.sources.linux.tpformat import EventFormat, Field

check_kernel(_pagewalk)

PAGE_HEADER_BYTES = 16
#: the kernel's PID_MAX_LIMIT on 64-bit: a larger pid means a damaged payload
PID_MAX_LIMIT = 1 << 22
#: smallest data event: 4-byte header + 4-byte payload
_MIN_EVENT_BYTES = 8

#: tracepoint name -> SchedKind, with the fields that fill pid / other_pid / prev_state
_SCHED_FIELDS: dict[str, tuple[SchedKind, str, str | None, str | None]] = {
    "sched_switch": (SchedKind.SWITCH, "prev_pid", "next_pid", "prev_state"),
    "sched_wakeup": (SchedKind.WAKEUP, "pid", None, None),
    "sched_wakeup_new": (SchedKind.WAKEUP_NEW, "pid", None, None),
    "sched_process_exit": (SchedKind.EXIT, "pid", None, None),
    "sched_process_fork": (SchedKind.FORK, "child_pid", "parent_pid", None),
    # a timer interrupt: the task it interrupted was running (the tick bounds a lost switch)
    "hrtimer_expire_entry": (SchedKind.SEEN, "common_pid", None, None),
}
#: where each event names threads: (pid field, comm field)
_COMM_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "sched_switch": (("prev_pid", "prev_comm"), ("next_pid", "next_comm")),
    "sched_wakeup": (("pid", "comm"),),
    "sched_wakeup_new": (("pid", "comm"),),
    "sched_process_exit": (("pid", "comm"),),
    "sched_process_fork": (("child_pid", "child_comm"), ("parent_pid", "parent_comm")),
    "hrtimer_expire_entry": (),
}


@dataclass(frozen=True, slots=True)
class PageLayout:
    """The page header layout from ``events/header_page``."""

    page_size: int
    data_offset: int = PAGE_HEADER_BYTES


def parse_header_page(text: str) -> PageLayout:
    """Check ``events/header_page`` describes the 64-bit layout this decoder reads."""
    fields = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"field:\s*[^;]*?(\w+);\s*offset:(\d+);\s*size:(\d+);", text)}
    expected = {"timestamp": (0, 8), "commit": (8, 8)}
    for name, where in expected.items():
        if fields.get(name) != where:
            raise ValueError(f"unsupported page header: {name} at {fields.get(name)}, "
                             f"expected offset/size {where}")
    data = fields.get("data")
    if data is None or data[0] != PAGE_HEADER_BYTES:
        raise ValueError("unsupported page header: data does not start at byte 16")
    return PageLayout(page_size=data[0] + data[1])


@dataclass(frozen=True, slots=True)
class LossWindow:
    """Events lost on one CPU between two times (``count`` -1: unknown)."""

    cpu: int
    start_ns: int
    end_ns: int
    count: int


@dataclass(slots=True)
class DecodedChunk:
    events: SchedEvents
    losses: list[LossWindow]
    #: tid -> comm seen in this chunk
    comms: dict[int, str]
    #: events skipped: an id that is not one of the known tracepoints, or (lenient)
    #: a damaged payload
    unknown: int
    #: lenient reading: pages skipped as corrupt, events dropped for going back in time,
    #: bytes of a trailing partial page
    corrupt_pages: int = 0
    dropped_backwards: int = 0
    truncated_bytes: int = 0


@dataclass(frozen=True, slots=True)
class _Extractor:
    kind: SchedKind
    pid: Field
    other: Field | None
    state: Field | None
    comms: tuple[tuple[Field, Field], ...]
    min_length: int


class SchedDecoder:
    """Decodes sched tracepoint payloads with the given formats (name -> format)."""

    def __init__(self, formats: Mapping[str, EventFormat]) -> None:
        self._by_id: dict[int, _Extractor] = {}
        for name, (kind, pid, other, state) in _SCHED_FIELDS.items():
            fmt = formats.get(name)
            if fmt is None:
                continue
            fields = [fmt.field(pid)] + [fmt.field(f) for f in (other, state) if f is not None]
            comms = tuple((fmt.field(p), fmt.field(c)) for p, c in _COMM_FIELDS[name]
                          if p in fmt.fields and c in fmt.fields)
            needed = fields + [f for pair in comms for f in pair]
            self._by_id[fmt.id] = _Extractor(
                kind, fmt.field(pid),
                fmt.field(other) if other is not None else None,
                fmt.field(state) if state is not None else None,
                comms, max(f.offset + f.size for f in needed))
        if not self._by_id:
            raise ValueError("no sched tracepoint format given")
        self._type_field = Field("common_type", 0, 2, False, False, None)

    @property
    def event_ids(self) -> set[int]:
        return set(self._by_id)

    def decode(self, data: npt.NDArray[np.uint8], times: npt.NDArray[np.int64],
               offsets: npt.NDArray[np.int64], lengths: npt.NDArray[np.int32], cpu: int,
               path: str, file_offset: int, lenient: bool = False
               ) -> tuple[SchedEvents, dict[int, str], int]:
        """Decode events at ``offsets`` of ``data``; returns events, comms, and the count
        of events skipped (unknown type, or with ``lenient`` a damaged payload)."""
        short = lengths < 2
        if short.any():
            bad = int(np.argmax(short))
            raise InputError(path, "event payload too short for its type",
                             offset=file_offset + int(offsets[bad]))
        types = _gather(data, offsets, self._type_field)
        keep = np.zeros(len(times), dtype=bool)
        kind = np.zeros(len(times), dtype=np.int8)
        pid = np.full(len(times), -1, dtype=np.int32)
        other = np.full(len(times), -1, dtype=np.int32)
        state = np.zeros(len(times), dtype=np.int64)
        comms: dict[int, str] = {}
        for event_id, ex in self._by_id.items():
            rows = np.flatnonzero(types == event_id)
            if not len(rows):
                continue
            too_short = lengths[rows] < ex.min_length
            if too_short.any():
                bad = int(rows[int(np.argmax(too_short))])
                raise InputError(path, f"event payload of {int(lengths[bad])} bytes is too short"
                                 f" for its type (needs {ex.min_length})",
                                 offset=file_offset + int(offsets[bad]))
            at = offsets[rows]
            keep[rows] = True
            kind[rows] = int(ex.kind)
            pid[rows] = _gather(data, at, ex.pid)
            if ex.other is not None:
                other[rows] = _gather(data, at, ex.other)
            if ex.state is not None:
                state[rows] = _gather(data, at, ex.state)
            for pid_field, comm_field in ex.comms:
                _collect_comms(data, at, lengths[rows], pid_field, comm_field, comms)
        damaged = keep & ((pid < 0) | (pid > PID_MAX_LIMIT) | (other < -1)
                          | (other > PID_MAX_LIMIT))
        if damaged.any():
            if not lenient:
                bad = int(np.argmax(damaged))
                raise InputError(path, f"damaged event: pid {int(pid[bad])} / "
                                 f"{int(other[bad])} out of range",
                                 offset=file_offset + int(offsets[bad]))
            keep &= ~damaged
        unknown = int(len(times) - int(keep.sum()))
        idx = np.flatnonzero(keep)
        # common_pid (offset 4 of every record): the task current on the CPU, evidence
        # for a dropped switch; -1 where damaged
        actor = _gather(data, offsets[idx], _COMMON_PID)
        actor[(actor < 0) | (actor > PID_MAX_LIMIT)] = -1
        events = SchedEvents.from_columns(times[idx], np.full(len(idx), cpu, dtype=np.int32),
                                          kind[idx], pid[idx], other[idx], state[idx], actor)
        return events, comms, unknown


_COMMON_PID = Field("common_pid", 4, 4, True, False, None)

_DTYPES = {(1, False): "u1", (1, True): "i1", (2, False): "<u2", (2, True): "<i2",
           (4, False): "<u4", (4, True): "<i4", (8, False): "<u8", (8, True): "<i8"}


def _gather(data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64],
            field: Field) -> npt.NDArray[np.int64]:
    """One integer field of every record at ``offsets``.

    Ring-buffer payloads are 4-byte aligned, so fields load as aligned 16/32-bit
    words (an 8-byte field as two words); anything unaligned takes a byte gather.
    """
    dtype = _DTYPES.get((field.size, field.signed))
    if dtype is None:
        raise ValueError(f"field {field.name} has unsupported size {field.size}")
    at = offsets + field.offset
    if field.size == 1:
        raw1 = data[at]
        return (raw1.view(np.int8) if field.signed else raw1).astype(np.int64)
    word = min(field.size, 4)
    if len(data) % 4 == 0 and not (at % word).any():
        if field.size == 2:
            raw2 = data.view("<u2")[at // 2]
            return (raw2.view(np.int16) if field.signed else raw2).astype(np.int64)
        words = data.view("<u4")
        low = words[at // 4]
        if field.size == 4:
            return (low.view(np.int32) if field.signed else low).astype(np.int64)
        value = low.astype(np.uint64) | (words[at // 4 + 1].astype(np.uint64) << np.uint64(32))
        return value.view(np.int64)
    index = at[:, None] + np.arange(field.size)
    raw = np.ascontiguousarray(data[index])
    return raw.view(dtype).reshape(-1).astype(np.int64)


def _collect_comms(data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64],
                   lengths: npt.NDArray[np.int32], pid_field: Field, comm_field: Field,
                   out: dict[int, str]) -> None:
    """The last comm of each distinct pid, in Python only once per pid."""
    pids = _gather(data, offsets, pid_field)
    reversed_pids = pids[::-1]
    unique, first_from_end = np.unique(reversed_pids, return_index=True)
    rows = len(pids) - 1 - first_from_end
    for tid, row in zip(unique.tolist(), rows.tolist(), strict=True):
        if tid <= 0:
            continue
        start = int(offsets[row])
        end = start + int(lengths[row])
        if comm_field.data_loc:
            loc = int(data[start + comm_field.offset: start + comm_field.offset + 4]
                      .view("<u4")[0])
            c_off, c_len = loc & 0xFFFF, loc >> 16
            raw = bytes(data[start + c_off: min(start + c_off + c_len, end)])
        else:
            raw = bytes(data[start + comm_field.offset: start + comm_field.offset
                             + comm_field.size])
        out[tid] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class PageStreamDecoder:
    """Decodes one CPU's pages chunk by chunk, carrying time and loss state across chunks.

    ``start_ns`` (the recording start) opens a loss window that precedes the
    CPU's first event.
    """

    def __init__(self, decoder: SchedDecoder, page_size: int, cpu: int, path: str,
                 start_ns: int | None = None, lenient: bool = False) -> None:
        if page_size <= PAGE_HEADER_BYTES:
            raise ValueError("page size too small")
        self.lenient = lenient
        self.decoder = decoder
        self.page_size = page_size
        self.cpu = cpu
        self.path = path
        self._start_ns = start_ns
        self._last_event: int | None = None
        #: start of a loss whose end is the next event (after a corrupt page)
        self._open_loss: int | None = None

    def decode(self, pages: bytes, file_offset: int) -> DecodedChunk:
        """Decode whole pages read from ``file_offset`` of the CPU's file.

        Lenient: a trailing partial page is ignored, corrupt pages become loss
        windows, and events older than their CPU's latest are dropped; all counted.
        """
        whole = len(pages) - len(pages) % self.page_size
        truncated = len(pages) - whole
        if truncated and not self.lenient:
            raise InputError(self.path, "file ends inside a page (truncated recording?)",
                             offset=file_offset + whole)
        pages = pages[:whole]
        times, offsets, lengths, info = walk_pages(pages, self.page_size, self.path,
                                                   file_offset, self.lenient)
        losses = self._losses(times, info)
        keep = self._check_order(times, offsets, file_offset)
        dropped = 0
        if keep is not None:
            dropped = len(times) - len(keep)
            times, offsets, lengths = times[keep], offsets[keep], lengths[keep]
        data = np.frombuffer(pages, dtype=np.uint8)
        events, comms, unknown = self.decoder.decode(data, times, offsets, lengths, self.cpu,
                                                     self.path, file_offset, self.lenient)
        return DecodedChunk(events, losses, comms, unknown,
                            corrupt_pages=int((info[:, 1] == -2).sum()),
                            dropped_backwards=dropped, truncated_bytes=truncated)

    @property
    def last_event_ns(self) -> int | None:
        return self._last_event

    def _losses(self, times: npt.NDArray[np.int64],
                info: npt.NDArray[np.int64]) -> list[LossWindow]:
        losses = []
        if self._open_loss is not None and len(times):
            start = min(self._open_loss, int(times[0]))
            losses.append(LossWindow(self.cpu, start, int(times[0]), -1))
            self._open_loss = None
        for page in np.flatnonzero(info[:, 1] != 0).tolist():
            first = int(info[page, 2])
            prior = int(times[first - 1]) if first > 0 else self._last_event
            if prior is None:
                prior = self._start_ns
            corrupt = int(info[page, 1]) == -2
            if first >= len(times) and corrupt:
                # a corrupt page's own timestamp is not to be trusted: the loss
                # ends at the next good event (or the end of the recording)
                if self._open_loss is None:
                    self._open_loss = prior if prior is not None else 0
                continue
            end = int(times[first]) if first < len(times) else int(info[page, 0])
            start = min(prior, end) if prior is not None else end
            losses.append(LossWindow(self.cpu, start, end, -1 if corrupt
                                     else int(info[page, 1])))
        return losses

    def finish(self, stop_ns: int, truncated: bool = False) -> list[LossWindow]:
        """A loss still open at the end of the file (corrupt or truncated tail)."""
        start = self._open_loss
        if truncated and start is None:
            start = self._last_event if self._last_event is not None else self._start_ns
        self._open_loss = None
        if start is None:
            return []
        return [LossWindow(self.cpu, min(start, stop_ns), stop_ns, -1)]

    def _check_order(self, times: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64],
                     file_offset: int) -> npt.NDArray[np.intp] | None:
        """Per-CPU time must not go backwards, or the merge would be wrong.

        Returns None if all is in order, else (lenient) the rows to keep.
        """
        if not len(times):
            return None
        floor = self._last_event if self._last_event is not None else int(times[0])
        running = np.maximum.accumulate(np.concatenate([[floor], times]))[:-1]
        back = np.flatnonzero(times < running)
        if not len(back):
            self._last_event = int(times[-1])
            return None
        if not self.lenient:
            raise InputError(self.path, f"time goes backwards on cpu {self.cpu}",
                             offset=file_offset + int(offsets[int(back[0])]))
        keep = np.flatnonzero(times >= running)
        if len(keep):
            self._last_event = max(floor, int(times[keep[-1]]))
        return keep


def walk_pages(pages: bytes, page_size: int, path: str, file_offset: int,
               lenient: bool = False) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                          npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Times, payload offsets and lengths of every data event, and per-page info rows."""
    n_pages = len(pages) // page_size
    cap = n_pages * ((page_size - PAGE_HEADER_BYTES) // _MIN_EVENT_BYTES + 1)
    times = np.empty(cap, dtype=np.int64)
    offsets = np.empty(cap, dtype=np.int64)
    lengths = np.empty(cap, dtype=np.int32)
    info = np.empty((n_pages, 3), dtype=np.int64)
    n, err_offset, message = walk(pages, page_size, times, offsets, lengths, info, lenient)
    if err_offset >= 0 and not lenient:
        raise InputError(path, message, offset=file_offset + err_offset)
    return times[:n], offsets[:n], lengths[:n], info


def merge_streams(streams: Iterable[Iterator[SchedEvents]]) -> Iterator[SchedEvents]:
    """Merge per-CPU time-sorted chunk streams into one time-sorted chunk stream.

    Each round emits every buffered event not later than the smallest
    "last buffered time" among unfinished streams, so no later chunk can hold
    an earlier event.  Ties keep stream order (CPU order), then event order.
    """
    iters = list(streams)
    buffers: list[SchedEvents] = [SchedEvents.concat([]) for _ in iters]
    done = [False] * len(iters)
    while True:
        for i, it in enumerate(iters):
            while not done[i] and not len(buffers[i]):
                chunk = next(it, None)
                if chunk is None:
                    done[i] = True
                else:
                    buffers[i] = chunk
        if not any(len(b) for b in buffers):
            return
        bounds = [int(b.time[-1]) for b, d in zip(buffers, done, strict=True) if not d]
        parts = []
        for i, b in enumerate(buffers):
            cut = len(b) if not bounds else int(np.searchsorted(b.time, min(bounds),
                                                                 side="right"))
            if cut:
                parts.append(b.take(np.arange(cut)))
                buffers[i] = b.take(np.arange(cut, len(b)))
        merged = SchedEvents.concat(parts)
        yield merged.take(np.argsort(merged.time, kind="stable"))
