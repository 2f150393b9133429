"""``runstate record``: trace the scheduler into a recording directory.

The recorder owns one private tracefs instance for its whole run and always
removes it (normal end, an exception, or a stop request set by a SIGINT /
SIGTERM handler).  Pages are copied to disk as they are, so the recording's
reader sees exactly what the kernel wrote.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runstate.errors import EnvironmentProblem, UsageError
from runstate.live import procinfo
from runstate.live.tracefs import SCHED_EVENTS, Tracefs, TraceInstance, find_tracefs
from runstate.sources.linux.recording import RecordingMeta, RecordingWriter

#: per-CPU buffer: enough for ~1 s of a busy host (about 30 B per sched event)
BUFFER_KB_ALL = 8192
BUFFER_KB_FILTERED = 2048
#: the buffer grows (doubling) up to this while one poll fills more than half of it
BUFFER_KB_MAX = 131072
POLL_SECONDS = 0.05


@dataclass(slots=True)
class RecordSummary:
    """What a finished recording holds."""

    path: Path
    instance: str
    start_ns: int
    stop_ns: int
    pages: int
    bytes: int
    threads: int
    lost: dict[int, int] = field(default_factory=dict)
    #: stale instances of killed runs removed at start
    removed_stale: list[str] = field(default_factory=list)
    #: per-CPU buffer size at the end (it grows with the event rate unless fixed)
    buffer_kb: int = 0


def select_pids(pids: Iterable[int] = (), vms: Iterable[str] = (),
                all_tasks: bool = False) -> tuple[list[int] | None, dict[int, str]]:
    """The processes to trace (None: everything) and the QEMU VMs among them.

    ``--vm NAME`` finds QEMU processes whose ``-name`` is NAME; their threads
    (vCPUs and the rest) are traced.  Unknown pids or VM names are usage errors.
    """
    pids, vms = list(pids), list(vms)
    if all_tasks:
        return None, procinfo.qemu_vms()
    if not pids and not vms:
        raise UsageError("say what to record: --pid PID, --vm NAME or --all")
    chosen: set[int] = set()
    for pid in pids:
        if not os.path.isdir(f"/proc/{pid}"):
            raise UsageError(f"--pid {pid}: no such process")
        chosen.add(pid)
    running = procinfo.qemu_vms()
    found_vms = {pid: name for pid, name in running.items() if pid in chosen}
    for name in vms:
        matches = [pid for pid, vm in running.items() if vm == name]
        if not matches:
            known = ", ".join(sorted(set(running.values()))) or "none running"
            raise UsageError(f"--vm {name}: no QEMU process with -name {name} (VMs: {known})")
        for pid in matches:
            chosen.add(pid)
            found_vms[pid] = name
    return sorted(chosen), found_vms


def record(
    out: str | os.PathLike[str],
    *,
    pids: list[int] | None,
    vms: dict[int, str] | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    buffer_kb: int | None = None,
    poll_s: float = POLL_SECONDS,
    progress: Callable[[str], None] | None = None,
    tracefs: Tracefs | None = None,
) -> RecordSummary:
    """Record sched events of ``pids``' threads (None: all tasks) into directory ``out``.

    Stops after ``duration_s`` or when ``stop`` is set, whichever is first.
    The tracefs instance is removed before this returns or raises.
    """
    if os.geteuid() != 0:
        raise EnvironmentProblem("runstate record needs root (tracefs)")
    if duration_s is None and stop is None:
        raise UsageError("record needs a duration or a stop event")
    stop = threading.Event() if stop is None else stop
    own_mount = tracefs is None
    tracefs = find_tracefs() if tracefs is None else tracefs
    try:
        return _record(Path(out), tracefs, pids, vms or {}, duration_s, stop, buffer_kb,
                       poll_s, progress)
    finally:
        if own_mount:
            tracefs.release()


def _record(out: Path, tracefs: Tracefs, pids: list[int] | None, vms: dict[int, str],
            duration_s: float | None, stop: threading.Event, buffer_kb: int | None,
            poll_s: float, progress: Callable[[str], None] | None) -> RecordSummary:
    before = set(os.listdir(tracefs.root / "instances"))
    instance = TraceInstance.create(tracefs)
    removed = sorted(n for n in before - set(os.listdir(tracefs.root / "instances"))
                     if n.startswith("runstate_"))
    with instance:
        tids = None
        if pids is not None:
            tids = sorted(procinfo.snapshot(pids)) or list(pids)
        kb = buffer_kb or (BUFFER_KB_ALL if pids is None else BUFFER_KB_FILTERED)
        instance.configure(pids=tids, buffer_kb=kb)
        cpus = instance.cpus()
        writer = RecordingWriter(out, cpus, instance.page_size())
        reader = instance.page_reader()
        try:
            start_ns = time.monotonic_ns()
            instance.start()
            tasks = procinfo.snapshot(pids)
            if progress is not None:
                what = "all tasks" if pids is None else f"{len(tasks)} threads"
                progress(f"Recording {what} into {out} ... Ctrl-C to stop")
            deadline = None if duration_s is None else time.monotonic() + duration_s
            sizer = _BufferSizer(instance, kb, writer.page_size, fixed=buffer_kb is not None)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                read: dict[int, int] = {}
                for cpu, page in reader.poll():
                    writer.write_page(cpu, page)
                    read[cpu] = read.get(cpu, 0) + 1
                sizer.after_poll(read)
                wait = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
                if wait > 0:
                    stop.wait(wait)
            instance.stop()
            stop_ns = time.monotonic_ns()
            for cpu, page in reader.drain():
                writer.write_page(cpu, page)
            stats = {cpu: instance.stats(cpu) for cpu in cpus}
        finally:
            reader.close()
            writer.close()
        formats = {"header_page": instance.format_text("events/header_page"),
                   "header_event": instance.format_text("events/header_event")}
        for event in SCHED_EVENTS:
            formats[f"sched/{event}/format"] = instance.format_text(
                f"events/sched/{event}/format")
        writer.write_formats(formats)
        for tid, info in procinfo.snapshot(pids).items():
            if tid in tasks:
                continue
            tasks[tid] = procinfo.ThreadInfo(info.tid, info.tgid, info.comm, "", info.cgroup)
        meta = RecordingMeta(
            start_ns=start_ns, stop_ns=stop_ns, page_size=writer.page_size, cpus=cpus,
            events=list(SCHED_EVENTS), pid_filter=tids,
            tasks={tid: t.as_json() for tid, t in tasks.items()},
            vms=vms or {}, cpu_stats={cpu: s.as_dict() for cpu, s in stats.items()},
        )
        writer.finish(meta)
    return RecordSummary(out, instance.name, start_ns, stop_ns, writer.pages_written,
                         writer.bytes_written, len(tasks),
                         {cpu: s.lost for cpu, s in stats.items() if s.lost}, removed,
                         sizer.kb)


class _BufferSizer:
    """Sizes the per-CPU ring buffer for the event rate seen while recording.

    When one poll reads more than half of a CPU's buffer, the next burst could
    overrun it before the following poll: the buffer doubles (up to
    :data:`BUFFER_KB_MAX`).  The kernel resizes a live buffer without losing
    what it holds.  A size the user gave (``--buffer-kb``) is kept as is.
    """

    def __init__(self, instance: TraceInstance, kb: int, page_size: int, fixed: bool) -> None:
        self.instance = instance
        self.kb = kb
        self.page_size = page_size
        self.fixed = fixed

    def after_poll(self, pages_read: dict[int, int]) -> None:
        if self.fixed or not pages_read or self.kb >= BUFFER_KB_MAX:
            return
        capacity = self.kb * 1024 // self.page_size
        if max(pages_read.values()) * 2 > capacity:
            self.kb = min(self.kb * 2, BUFFER_KB_MAX)
            self.instance.resize(self.kb)
