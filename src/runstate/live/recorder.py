"""``runstate record``: trace the scheduler into a recording directory.

The recorder owns one private tracefs instance for its whole run and always
removes it (normal end, an exception, or a stop request set by a SIGINT /
SIGTERM handler).  Pages are copied to disk as they are, so the recording's
reader sees exactly what the kernel wrote.  ``meta.json`` is written before
tracing starts and again at the end, so even a recorder killed with SIGKILL
leaves a recording that reads.

A command to record (``record -- CMD``) is forked first and held before
``exec`` on a pipe until tracing of its pid has started, so its very first
events are captured; no shell is involved.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runstate.errors import EnvironmentProblem, UsageError
from runstate.live import procinfo
from runstate.live.tracefs import Tracefs, TraceInstance, find_tracefs
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
    #: ``record -- CMD``: the command's exit code (None: still running when stopped,
    #: then it was sent SIGTERM; negative: the signal that ended it)
    exit_code: int | None = None


def select_pids(pids: Iterable[int] = (), vms: Iterable[str] = (),
                all_tasks: bool = False, wait_for_vms: bool = False
                ) -> tuple[list[int] | None, dict[int, str]]:
    """The processes to trace (None: everything) and the QEMU VMs among them.

    ``--vm NAME`` finds QEMU processes whose ``-name`` is NAME; their threads
    (vCPUs and the rest) are traced.  Unknown pids or VM names are usage errors,
    except VM names with ``wait_for_vms``: a live view follows a VM once it starts.
    """
    pids, vms = list(pids), list(vms)
    if all_tasks:
        return None, procinfo.qemu_vms()
    if not pids and not vms:
        raise UsageError("say what to record: --pid PID, --vm NAME or --all")
    chosen: set[int] = set()
    for pid in pids:
        tgid = procinfo.thread_group(pid)
        if tgid is None:
            raise EnvironmentProblem(f"--pid {pid}: no such process")
        chosen.add(tgid)
    running = procinfo.qemu_vms()
    found_vms = {pid: name for pid, name in running.items() if pid in chosen}
    for name in vms:
        matches = [pid for pid, vm in running.items() if vm == name]
        if not matches and wait_for_vms:
            continue
        if not matches:
            known = ", ".join(sorted(set(running.values()))) or "none running"
            raise EnvironmentProblem(f"--vm {name}: no QEMU process with -name {name} "
                                     f"(VMs: {known})")
        for pid in matches:
            chosen.add(pid)
            found_vms[pid] = name
    return sorted(chosen), found_vms


class CommandNotStarted(EnvironmentProblem):
    """``record -- CMD``: the command could not be executed (nothing was recorded)."""


class HeldCommand:
    """A command forked and held before ``exec`` until :meth:`release`.

    The child waits on a pipe, so the parent can put its pid in the trace
    filter first; a second, close-on-exec pipe carries an ``exec`` failure
    (errno) back.  No shell: ``argv`` runs as given (looked up in ``PATH``).
    """

    def __init__(self, argv: list[str]) -> None:
        if not argv:
            raise UsageError("no command given after --")
        self.argv = argv
        go_read, self._go = os.pipe()
        self._err, err_write = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:  # the child: wait for the go, then become the command
            os.close(self._go)
            os.close(self._err)
            self._child(go_read, err_write)
        os.close(go_read)
        os.close(err_write)
        self.exit_code: int | None = None

    def _child(self, go_read: int, err_write: int) -> None:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            if os.read(go_read, 1) != b"g":
                os._exit(127)  # the recorder gave up before starting it
            os.close(go_read)
            os.execvp(self.argv[0], self.argv)
        except OSError as error:
            os.write(err_write, str(error.errno or errno.EIO).encode())
        finally:
            os._exit(127)

    def release(self) -> None:
        """Let the command run; raise if it could not be started."""
        os.write(self._go, b"g")
        os.close(self._go)
        self._go = -1
        report = os.read(self._err, 16)
        os.close(self._err)
        self._err = -1
        if report:
            self.wait()
            code = int(report) if report.isdigit() else errno.EIO
            raise CommandNotStarted(f"cannot run {self.argv[0]!r}: {os.strerror(code)}")

    def poll(self) -> int | None:
        """The exit code once the command has ended (negative: killed by that signal)."""
        if self.exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code

    def wait(self) -> int:
        if self.exit_code is None:
            _, status = os.waitpid(self.pid, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code

    def close(self) -> None:
        """Never leave a held or running child behind: unstarted, it exits on EOF;
        still running, it gets SIGTERM."""
        for fd in (self._go, self._err):
            if fd >= 0:
                os.close(fd)
        self._go = self._err = -1
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            self.wait()


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
    command: list[str] | None = None,
) -> RecordSummary:
    """Record sched events of ``pids``' threads (None: all tasks) into directory ``out``.

    With ``command``, that command is started and its threads (and what it
    forks) are recorded from its first event until it exits.  Stops after
    ``duration_s``, when ``stop`` is set or when the command ends, whichever is
    first.  The tracefs instance is removed before this returns or raises.
    """
    if os.geteuid() != 0:
        raise EnvironmentProblem("runstate record needs root (tracefs)")
    if duration_s is None and stop is None and command is None:
        raise UsageError("record needs a duration or a stop event")
    stop = threading.Event() if stop is None else stop
    own_mount = tracefs is None
    tracefs = find_tracefs() if tracefs is None else tracefs
    held = None
    try:
        if command is not None:
            held = HeldCommand(command)
            pids = [held.pid]
        return _record(Path(out), tracefs, pids, vms or {}, duration_s, stop, buffer_kb,
                       poll_s, progress, held)
    finally:
        if held is not None:
            held.close()
        if own_mount:
            tracefs.release()


def _record(out: Path, tracefs: Tracefs, pids: list[int] | None, vms: dict[int, str],
            duration_s: float | None, stop: threading.Event, buffer_kb: int | None,
            poll_s: float, progress: Callable[[str], None] | None,
            held: HeldCommand | None = None) -> RecordSummary:
    before = set(os.listdir(tracefs.root / "instances"))
    instance = TraceInstance.create(tracefs)
    removed = sorted(n for n in before - set(os.listdir(tracefs.root / "instances"))
                     if n.startswith("runstate_"))
    with instance:
        tids = None
        if pids is not None:
            tids = sorted(procinfo.snapshot(pids)) or list(pids)
        kb = buffer_kb or (BUFFER_KB_ALL if pids is None else BUFFER_KB_FILTERED)
        events = instance.configure(pids=tids, buffer_kb=kb)
        _record_tgids(instance)
        cpus = instance.cpus()
        writer = RecordingWriter(out, cpus, instance.page_size())
        writer.write_formats(format_files(instance))
        reader = instance.page_reader()
        try:
            start_ns = time.monotonic_ns()
            instance.start()
            tasks = procinfo.snapshot(pids)
            meta = RecordingMeta(start_ns=start_ns, stop_ns=start_ns,
                                 page_size=writer.page_size, cpus=cpus,
                                 events=events, pid_filter=tids,
                                 tasks={tid: t.as_json() for tid, t in tasks.items()},
                                 vms=vms or {})
            writer.begin(meta)
            if held is not None:
                held.release()
            if progress is not None:
                what = "all tasks" if pids is None else f"{len(tasks)} threads"
                if held is not None:
                    what = f"{' '.join(held.argv)} (pid {held.pid})"
                progress(f"Recording {what} into {out} ... Ctrl-C to stop")
            deadline = None if duration_s is None else time.monotonic() + duration_s
            sizer = _BufferSizer(instance, kb, writer.page_size, fixed=buffer_kb is not None)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                read: dict[int, int] = {}
                for cpu, page in reader.poll():
                    writer.write_page(cpu, page)
                    read[cpu] = read.get(cpu, 0) + 1
                writer.flush()
                sizer.after_poll(read)
                if held is not None and held.poll() is not None:
                    break
                wait = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
                if wait > 0:
                    stop.wait(wait)
            if held is not None and held.poll() is None:
                held.close()  # stopped early: the command ends with the recording
            instance.stop()
            stop_ns = time.monotonic_ns()
            for cpu, page in reader.drain():
                writer.write_page(cpu, page)
            stats = {cpu: instance.stats(cpu) for cpu in cpus}
        finally:
            reader.close()
            writer.close()
        for tid, info in procinfo.snapshot(pids).items():
            if tid in tasks:
                continue
            tasks[tid] = procinfo.ThreadInfo(info.tid, info.tgid, info.comm, "", info.cgroup)
        meta.stop_ns = stop_ns
        meta.tasks = {tid: t.as_json() for tid, t in tasks.items()}
        for tid, tgid in _saved_tgids(tracefs).items():
            # threads that came and went while recording: /proc no longer knows them
            # (a process leader needs no entry: its tgid is its own id)
            if tid != tgid:
                meta.tasks.setdefault(tid, {"tgid": tgid})
        meta.cpu_stats = {cpu: s.as_dict() for cpu, s in stats.items()}
        writer.finish(meta)
    return RecordSummary(out, instance.name, start_ns, stop_ns, writer.pages_written,
                         writer.bytes_written, len(tasks),
                         {cpu: s.lost for cpu, s in stats.items() if s.lost}, removed,
                         sizer.kb, held.exit_code if held is not None else None)


def _record_tgids(instance: TraceInstance) -> None:
    """Ask the kernel to note each switching task's process (``saved_tgids``).

    A thread that starts and ends while recording is gone from /proc by the
    end, and the sched events do not say which process it belonged to.  The
    option belongs to the instance and goes with it.
    """
    with contextlib.suppress(OSError):
        (instance.path / "options" / "record-tgid").write_text("1")


def _saved_tgids(tracefs: Tracefs) -> dict[int, int]:
    """tid -> tgid from tracefs ``saved_tgids`` (empty if the kernel has none)."""
    try:
        text = (tracefs.root / "saved_tgids").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            found[int(fields[0])] = int(fields[1])
    return found


def format_files(instance: TraceInstance) -> dict[str, str]:
    """The tracefs format files a reader needs to decode the pages, by their path
    under ``events/``."""
    formats = {"header_page": instance.format_text("events/header_page"),
               "header_event": instance.format_text("events/header_event")}
    for (system, name), text in instance.event_formats().items():
        formats[f"{system}/{name}/format"] = text
    return formats


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
