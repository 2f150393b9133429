"""The recording directory written by ``runstate record``, and its reader.

Layout (version 1)::

    DIR/
      meta.json           what the events alone do not say (below)
      formats/            the tracefs format files the pages were written with:
        header_page, header_event, <system>/<event>/format
      cpu<N>.raw          CPU N's ring-buffer pages as read from
                          per_cpu/cpu<N>/trace_pipe_raw, concatenated; each page
                          is ``page_size`` bytes (short reads are zero-padded)

``meta.json``::

    {"format": "runstate-tracefs-recording", "version": 1,
     "clock": "mono",                  # tracefs trace_clock: CLOCK_MONOTONIC ns
     "start_ns": ..., "stop_ns": ...,  # CLOCK_MONOTONIC when tracing was switched on/off
     "page_size": 4096, "byte_order": "little",
     "cpus": [0, 1], "events": ["sched_switch", ..., "timer/hrtimer_expire_entry"],
                                       # bare names are sched events; a timer event's
                                       # common_pid shows the task a CPU runs
     "pid_filter": [tid, ...] or null, # set_event_pid (forks followed); null: every task
     "tasks": {"<tid>": {"comm": ..., "tgid": ..., "cgroup": ..., "state": "R"}, ...},
     "vms": {"<tgid>": "guest name"},  # QEMU processes and their -name guest=
     "cpu_stats": {"<cpu>": {"entries": ..., "overrun": ..., "commit_overrun": ...,
                             "dropped": ..., "read_events": ...}},
     "kernel": "6.18.44 ...", "host": "..."}

``tasks`` is /proc at the start (a thread that never switches is known only
from it).  ``meta.json`` is written when recording starts, with
``"finished": false``, and rewritten at the end; a recorder killed before the
end (SIGKILL, a crash, power loss) so leaves a recording that is still read,
up to its last event, with a note saying it was not finished.  Names come
from the events where they have them (the latest seen), so a task that
``exec``-s or renames itself is named as perf names it, not as /proc named it
at the start.

Lost data: a page flagged by the kernel as following overwritten events
becomes a lost window on that CPU; if the kernel's counters report more
losses than the pages locate, the whole recording is marked lost on that CPU
(never a silently wrong number).
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.formats import TRACEFS_RECORDING
from runstate.sources.linux.grouping import Assignment, Grouping
from runstate.sources.linux.sched import LostEvents, SchedConverter, convert_stream
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames
from runstate.sources.linux.sniff import FORMAT_NAME, META_FILE, is_recording
from runstate.sources.linux.tpformat import EventFormat, FormatError, event_dir, parse_format
from runstate.sources.linux.tracefs_raw import (
    LossWindow,
    PageLayout,
    PageStreamDecoder,
    SchedDecoder,
    merge_streams,
    parse_header_page,
)

VERSION = 1
#: pages decoded at a time per CPU (1 MiB of 4 KiB pages)
CHUNK_PAGES = 256


@dataclass(slots=True)
class RecordingMeta:
    """The contents of ``meta.json``."""

    start_ns: int
    stop_ns: int
    page_size: int
    cpus: list[int]
    events: list[str]
    pid_filter: list[int] | None
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    vms: dict[int, str] = field(default_factory=dict)
    cpu_stats: dict[int, dict[str, int]] = field(default_factory=dict)
    clock: str = "mono"
    byte_order: str = "little"
    kernel: str = ""
    host: str = ""
    #: False while recording (and in the recording of a recorder that was killed)
    finished: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME, "version": VERSION, "finished": self.finished,
            "clock": self.clock,
            "start_ns": self.start_ns, "stop_ns": self.stop_ns, "page_size": self.page_size,
            "byte_order": self.byte_order, "cpus": self.cpus, "events": self.events,
            "pid_filter": self.pid_filter,
            "tasks": {str(k): v for k, v in sorted(self.tasks.items())},
            "vms": {str(k): v for k, v in sorted(self.vms.items())},
            "cpu_stats": {str(k): v for k, v in sorted(self.cpu_stats.items())},
            "kernel": self.kernel, "host": self.host,
        }

    @classmethod
    def from_json(cls, obj: Any, path: str) -> RecordingMeta:
        """Validate and load; every problem is an InputError naming ``meta.json``."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise InputError(path, f"not a {FORMAT_NAME} metadata file")
        if obj.get("version") != VERSION:
            raise InputError(path, f"unsupported recording version {obj.get('version')!r} "
                             f"(this runstate reads version {VERSION})")
        try:
            meta = cls(
                start_ns=_int(obj["start_ns"]), stop_ns=_int(obj["stop_ns"]),
                page_size=_int(obj["page_size"]),
                cpus=[_int(c) for c in obj["cpus"]],
                events=[str(e) for e in obj["events"]],
                pid_filter=None if obj.get("pid_filter") is None
                else [_int(p) for p in obj["pid_filter"]],
                tasks={_int(k): dict(v) for k, v in obj.get("tasks", {}).items()},
                vms={_int(k): str(v) for k, v in obj.get("vms", {}).items()},
                cpu_stats={_int(k): {str(a): _int(b) for a, b in v.items()}
                           for k, v in obj.get("cpu_stats", {}).items()},
                clock=str(obj.get("clock", "mono")),
                byte_order=str(obj.get("byte_order", "little")),
                kernel=str(obj.get("kernel", "")), host=str(obj.get("host", "")),
                finished=obj.get("finished", True) is not False,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InputError(path, f"bad recording metadata: {type(err).__name__} {err}") \
                from None
        if meta.byte_order != "little":
            raise InputError(path, "big-endian recordings are not supported")
        if meta.page_size <= 16 or meta.page_size > (1 << 24):
            raise InputError(path, f"bad page_size {meta.page_size}")
        if meta.stop_ns < meta.start_ns:
            raise InputError(path, "stop_ns is before start_ns")
        return meta

    def task_names(self) -> TaskNames:
        names = TaskNames()
        for tid, task in self.tasks.items():
            if isinstance(task.get("comm"), str):
                names.comm[tid] = task["comm"]
            if isinstance(task.get("tgid"), int):
                names.tgid[tid] = task["tgid"]
            if isinstance(task.get("cgroup"), str):
                names.cgroup[tid] = task["cgroup"]
            if isinstance(task.get("state"), str) and task["state"]:
                names.start_state[tid] = task["state"]
        names.vm_name.update(self.vms)
        return names


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


# ---- writing ------------------------------------------------------------------

class RecordingWriter:
    """Creates a recording directory and appends raw pages per CPU."""

    def __init__(self, directory: str | os.PathLike[str], cpus: Iterable[int],
                 page_size: int) -> None:
        self.path = Path(directory)
        self.page_size = page_size
        self.pages_written = 0
        self.bytes_written = 0
        if self.path.exists() and any(self.path.iterdir()):
            raise FileExistsError(f"{self.path} exists and is not empty")
        # the parent must exist: a typo in a path should not create directories
        self.path.mkdir(exist_ok=True)
        self._files: dict[int, IO[bytes]] = {
            cpu: open(self.path / f"cpu{cpu}.raw", "wb")  # noqa: SIM115 - closed in close()
            for cpu in cpus}

    def begin(self, meta: RecordingMeta) -> None:
        """Write ``meta.json`` marked unfinished, so a killed recorder leaves a readable
        recording."""
        meta.finished = False
        self._write_meta(meta)

    def flush(self) -> None:
        """Hand the pages written so far to the kernel (they survive a killed recorder)."""
        for f in self._files.values():
            f.flush()

    def write_page(self, cpu: int, page: bytes) -> None:
        if len(page) != self.page_size:
            raise ValueError("page of the wrong size")
        self._files[cpu].write(page)
        self.pages_written += 1
        self.bytes_written += len(page)

    def write_formats(self, texts: dict[str, str]) -> None:
        """Save format files by their tracefs path relative to ``events/``."""
        for relative, text in texts.items():
            target = self.path / "formats" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def finish(self, meta: RecordingMeta) -> None:
        """Close the page files and write ``meta.json`` (atomically, last)."""
        self.close()
        meta.finished = True
        self._write_meta(meta)

    def _write_meta(self, meta: RecordingMeta) -> None:
        meta.kernel = meta.kernel or " ".join(platform.uname()[2:4])
        meta.host = meta.host or platform.node()
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta.to_json(), indent=1) + "\n")
        os.replace(tmp, self.path / META_FILE)

    def close(self) -> None:
        for f in self._files.values():
            f.close()


# ---- reading ------------------------------------------------------------------

def load_meta(directory: str) -> RecordingMeta:
    path = os.path.join(directory, META_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise InputError(directory, f"not a runstate recording (no {META_FILE})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON: {err.msg}", line=err.lineno) from None
    return RecordingMeta.from_json(obj, path)


#: a tracefs system or event name (so a damaged meta.json names no path outside formats/)
_EVENT_NAME = re.compile(r"^\w+$")


def load_formats(directory: str, events: Iterable[str]
                 ) -> tuple[PageLayout, dict[str, EventFormat]]:
    """The page layout and the event formats saved in ``formats/``, by event name."""
    base = os.path.join(directory, "formats")
    header = os.path.join(base, "header_page")
    try:
        layout = parse_header_page(_read_text(header))
    except ValueError as err:
        raise InputError(header, str(err)) from None
    formats = {}
    for event in events:
        system, name = event_dir(event)
        if not (_EVENT_NAME.match(system) and _EVENT_NAME.match(name)):
            raise InputError(os.path.join(directory, "meta.json"),
                             f"bad event name {event!r} in 'events'")
        path = os.path.join(base, system, name, "format")
        try:
            formats[name] = parse_format(_read_text(path), system)
        except FormatError as err:
            raise InputError(path, f"bad format file: {err}") from None
    return layout, formats


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(path, "missing from the recording") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read: {err}") from None


class RecordingSource:
    """A recording directory as a re-readable source of member state changes."""

    def __init__(self, path: str, options: ReadOptions) -> None:
        self.path = path
        self._options = options
        self.meta = load_meta(path)
        layout, formats = load_formats(path, self.meta.events)
        if layout.page_size != self.meta.page_size:
            raise InputError(os.path.join(path, META_FILE),
                             f"page_size {self.meta.page_size} disagrees with "
                             f"formats/header_page ({layout.page_size})")
        try:
            self._decoder = SchedDecoder(formats)
        except (KeyError, ValueError) as err:
            raise InputError(os.path.join(path, "formats"), str(err)) from None
        self.registry = Registry()
        self.info = SourceInfo(format=RECORDING_READER.FORMAT.name, path=path,
                               clock=self.meta.clock, start_ticks=self.meta.start_ns,
                               end_ticks=self.meta.stop_ns)
        self.rereadable = True
        self._names: TaskNames | None = None
        self._losses: list[LossWindow] = []
        self._unknown = 0
        self._damage = {"corrupt_pages": 0, "events_out_of_order_dropped": 0,
                        "truncated_bytes": 0}
        #: with a pid filter: the filtered threads and their forked descendants
        self._keep: set[int] | None = None
        if not self.meta.finished:
            # the end is the last event: learn it now, so the window is right from the start
            self._scan()
            self.info = SourceInfo(format=self.info.format, path=path, clock=self.meta.clock,
                                   start_ticks=self.meta.start_ns, end_ticks=self.meta.stop_ns)

    def cpu_file(self, cpu: int) -> str:
        return os.path.join(self.path, f"cpu{cpu}.raw")

    def batches(self) -> Iterator[EventBatch]:
        names = self._scan()
        # a fresh info per pass, so anomaly counts are not doubled by the two passes
        self.info = SourceInfo(format=self.info.format, path=self.path, clock=self.meta.clock,
                               start_ticks=self.meta.start_ns, end_ticks=self.meta.stop_ns)
        self._note_losses()
        # with a pid filter, only the recorded threads decide the default grouping: a
        # QEMU vCPU that merely switched with one of them does not make the report per VM
        converter = SchedConverter(self.path, self.registry, self.info, names, self._options,
                                   n_cpus=len(self.meta.cpus), active=self._keep,
                                   filtered=self._keep is not None)
        if self._keep is not None:
            converter.grouping = _FilteredGrouping(converter.grouping, self._keep)
        yield from convert_stream(converter, self.items())

    def items(self) -> Iterator[SchedEvents | LostEvents]:
        """Merged events with each loss placed where it begins."""
        self._scan()
        return _interleave(merge_streams(self._cpu_events(cpu) for cpu in self.meta.cpus),
                           [LostEvents(w.cpu, w.start_ns, w.end_ns,
                                       w.count if w.count >= 0 else None)
                            for w in self._losses])

    def events(self) -> Iterator[SchedEvents]:
        """The decoded events alone, merged by time (no loss markers)."""
        return merge_streams(self._cpu_events(cpu) for cpu in self.meta.cpus)

    def _stream(self, cpu: int) -> PageStreamDecoder:
        return PageStreamDecoder(self._decoder, self.meta.page_size, cpu, self.cpu_file(cpu),
                                 self.meta.start_ns, lenient=self._options.lenient)

    def _cpu_events(self, cpu: int) -> Iterator[SchedEvents]:
        stream = self._stream(cpu)
        for offset, pages in self._chunks(cpu):
            chunk = stream.decode(pages, offset)
            if len(chunk.events):
                yield chunk.events

    def _chunks(self, cpu: int) -> Iterator[tuple[int, bytes]]:
        path = self.cpu_file(cpu)
        size = CHUNK_PAGES * self.meta.page_size
        try:
            with open(path, "rb") as f:
                offset = 0
                while True:
                    data = f.read(size)
                    if not data:
                        return
                    yield offset, data
                    offset += len(data)
        except FileNotFoundError:
            raise InputError(path, "missing from the recording") from None
        except OSError as err:
            raise InputError(path, f"cannot read: {err.strerror}") from None

    def _scan(self) -> TaskNames:
        """First pass (once): thread names from the events and the loss windows."""
        if self._names is not None:
            return self._names
        names = self.meta.task_names()
        #: tid -> (time of the chunk's last event, comm): the latest name wins
        seen: dict[int, tuple[int, str]] = {}
        forks: list[tuple[int, int]] = []
        losses: list[LossWindow] = []
        ends: list[tuple[PageStreamDecoder, bool, int]] = []
        last_event = self.meta.start_ns
        for cpu in self.meta.cpus:
            stream = self._stream(cpu)
            located = 0
            truncated = False
            for offset, pages in self._chunks(cpu):
                chunk = stream.decode(pages, offset)
                truncated = truncated or chunk.truncated_bytes > 0
                self._damage["corrupt_pages"] += chunk.corrupt_pages
                self._damage["events_out_of_order_dropped"] += chunk.dropped_backwards
                self._damage["truncated_bytes"] += chunk.truncated_bytes
                at = int(chunk.events.time[-1]) if len(chunk.events) else -1
                last_event = max(last_event, at)
                for tid, comm in chunk.comms.items():
                    if at >= seen.get(tid, (-1, ""))[0]:
                        seen[tid] = (at, comm)
                fork = chunk.events.kind == int(SchedKind.FORK)
                forks.extend(zip(chunk.events.other_pid[fork].tolist(),
                                 chunk.events.pid[fork].tolist(), strict=True))
                losses.extend(chunk.losses)
                located += sum(w.count for w in chunk.losses if w.count > 0)
                self._unknown += chunk.unknown
            ends.append((stream, truncated, located))
        if not self.meta.finished:
            self.meta.stop_ns = last_event
        for stream, truncated, located in ends:
            losses.extend(stream.finish(self.meta.stop_ns, truncated))
            losses.extend(self._unlocated(stream.cpu, located, losses))
        for tid, (_, comm) in seen.items():
            names.comm[tid] = comm
        self._losses = sorted(losses, key=lambda w: (w.start_ns, w.cpu))
        if self.meta.pid_filter is not None:
            self._keep = _descendants(set(self.meta.pid_filter), forks)
        self._names = names
        return names

    def _unlocated(self, cpu: int, located: int,
                   found: list[LossWindow]) -> list[LossWindow]:
        """A whole-recording loss on ``cpu`` if the kernel lost more than the pages say."""
        stats = self.meta.cpu_stats.get(cpu, {})
        reported = stats.get("overrun", 0) + stats.get("commit_overrun", 0) \
            + stats.get("dropped", 0)
        unknown_counts = any(w.cpu == cpu and w.count < 0 for w in found)
        if reported > located and not unknown_counts:
            return [LossWindow(cpu, self.meta.start_ns, self.meta.stop_ns, reported - located)]
        return []

    def _note_losses(self) -> None:
        if self._unknown:
            self.info.count("events_skipped", self._unknown)
            if self._options.strict:
                raise InputError(self.path, f"{self._unknown} events of unknown type or damaged "
                                 "(--strict makes anomalies fatal)")
        for name, n in self._damage.items():
            if n:
                self.info.count(name, n)
        for cpu, stats in sorted(self.meta.cpu_stats.items()):
            lost = stats.get("overrun", 0) + stats.get("commit_overrun", 0) \
                + stats.get("dropped", 0)
            if lost:
                self.info.notes.append(f"kernel reported {lost} events lost on cpu {cpu}")
        if not self.meta.finished:
            self.info.notes.append("recording not finished: the recorder stopped without "
                                   "closing it; data up to "
                                   f"{self.meta.stop_ns / 1e9:.6f} s")
        if self.meta.pid_filter is not None:
            self.info.notes.append(f"recorded with a pid filter ({len(self.meta.pid_filter)} "
                                   "threads, forks followed)")


def _descendants(roots: set[int], forks: list[tuple[int, int]]) -> set[int]:
    """``roots`` and every task forked from them (the kernel's event-fork rule)."""
    keep = set(roots)
    grew = True
    while grew:
        grew = False
        for parent, child in forks:
            if parent in keep and child not in keep:
                keep.add(child)
                grew = True
    return keep


class _FilteredGrouping(Grouping):
    """A grouping restricted to the recorded threads.

    With ``set_event_pid`` the trace shows other tasks only when they switch
    with a recorded one, so their timelines are partial; they are no member.
    """

    def __init__(self, inner: Grouping, keep: set[int]) -> None:
        super().__init__(inner.mode, inner.names)
        self._inner = inner
        self._keep = keep

    def assign(self, tid: int) -> Assignment | None:
        return self._inner.assign(tid) if tid in self._keep else None


def _interleave(chunks: Iterator[SchedEvents], losses: list[LostEvents]
                ) -> Iterator[SchedEvents | LostEvents]:
    """Place each loss before the first event at or after its start."""
    pending = sorted(losses, key=lambda w: w.begin_ns)
    i = 0
    for chunk in chunks:
        while i < len(pending) and len(chunk) and pending[i].begin_ns <= int(chunk.time[-1]):
            cut = int(np.searchsorted(chunk.time, pending[i].begin_ns, side="left"))
            if cut:
                yield chunk.take(np.arange(cut))
                chunk = chunk.take(np.arange(cut, len(chunk)))
            yield pending[i]
            i += 1
        if len(chunk):
            yield chunk
    yield from pending[i:]


class _RecordingReader:
    FORMAT = TRACEFS_RECORDING

    def sniff(self, path: str, head: bytes) -> bool:
        return is_recording(path, head)

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions
             ) -> RecordingSource:
        if stream is not None or not os.path.isdir(path):
            if os.path.basename(path) == META_FILE and stream is None:
                return RecordingSource(os.path.dirname(path) or ".", options)
            raise InputError(path, "a tracefs recording is a directory (runstate record -o DIR)")
        return RecordingSource(path, options)


RECORDING_READER = _RecordingReader()
