"""Private tracefs instances: creation, configuration, page reading and removal.

The tool traces through its own instance ``instances/runstate_<pid>_<start>``
(the pid and the process start time, so a reused pid is not mistaken for a
live owner).  An instance has its own buffer, event enables, pid filter and
clock, so the top-level tracing state is never touched, and ``rmdir`` of the
instance undoes everything it enabled.  A run killed with SIGKILL leaves its
instance behind; :func:`remove_stale_instances` (called by every
:meth:`TraceInstance.create`) removes instances whose owner is gone.

Reading follows what was measured on real kernels: each per-CPU
``trace_pipe_raw`` is opened with ``O_NONBLOCK``; one ``read`` returns at most
one sub-buffer page; once the reader has caught up every read returns a nearly
empty copy of the page being written, so a polling round stops reading a CPU
at the first page that is less than 3/4 full.  :class:`PageReader` keeps no
state beyond its file descriptors, so a live view can poll it incrementally.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runstate.errors import EnvironmentProblem
from runstate.sources.linux.tpformat import event_dir

#: every instance this tool creates starts with this
INSTANCE_PREFIX = "runstate_"
_INSTANCE_NAME = re.compile(r"^runstate_(\d+)_(\d+)$")

#: where tracefs normally lives, in order of preference
TRACEFS_PATHS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

#: the scheduler tracepoints a recording enables
SCHED_EVENTS = (
    "sched_switch",
    "sched_wakeup",
    "sched_wakeup_new",
    "sched_process_fork",
    "sched_process_exit",
)
#: timer events whose ``common_pid`` shows the task a CPU runs (the sched tick among
#: them): a task spinning alone on a CPU has no sched event for as long as it spins, and
#: these bound a switch-in of it the tracer dropped to a tick; enabled where present
TICK_EVENTS = ("timer/hrtimer_expire_entry",)

#: page header: u64 timestamp, u64 commit; the commit word's low bits are the data length
PAGE_HEADER_BYTES = 16
_COMMIT_LENGTH_MASK = (1 << 30) - 1
#: a page copy shorter than this fraction of its data area means the reader caught up
_CAUGHT_UP_FRACTION = 0.75


@dataclass(frozen=True, slots=True)
class Tracefs:
    """A mounted tracefs, and whether this process mounted it (then it unmounts it)."""

    root: Path
    mounted_by_us: bool

    def release(self) -> None:
        """Unmount tracefs if this process mounted it; a busy mount is left in place."""
        if self.mounted_by_us:
            _umount(str(self.root))


@dataclass(frozen=True, slots=True)
class CpuStats:
    """Counters from ``per_cpu/cpuN/stats`` that say whether events were lost."""

    entries: int = 0
    overrun: int = 0
    commit_overrun: int = 0
    dropped: int = 0
    read_events: int = 0

    @property
    def lost(self) -> int:
        return self.overrun + self.commit_overrun + self.dropped

    def as_dict(self) -> dict[str, int]:
        return {"entries": self.entries, "overrun": self.overrun,
                "commit_overrun": self.commit_overrun, "dropped": self.dropped,
                "read_events": self.read_events}


def find_tracefs(mount_if_absent: bool = True) -> Tracefs:
    """The tracefs mount point, mounting it at /sys/kernel/tracing if none is mounted."""
    for path in _tracefs_mounts():
        if Path(path, "instances").is_dir():
            return Tracefs(Path(path), mounted_by_us=False)
    if os.geteuid() != 0:
        raise EnvironmentProblem("runstate record needs root (tracefs)")
    if not mount_if_absent:
        raise EnvironmentProblem("tracefs is not mounted")
    target = TRACEFS_PATHS[0]
    if not os.path.isdir(target):
        raise EnvironmentProblem(f"tracefs is not mounted and {target} does not exist "
                                 "(kernel without CONFIG_TRACING?)")
    _mount_tracefs(target)
    return Tracefs(Path(target), mounted_by_us=True)


def _tracefs_mounts() -> list[str]:
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = [fields[1] for fields in (line.split() for line in lines)
             if len(fields) >= 3 and fields[2] == "tracefs"]
    preferred = [p for p in TRACEFS_PATHS if p in found]
    return preferred + [p for p in found if p not in preferred]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount_tracefs(target: str) -> None:
    result = _libc().mount(b"nodev", target.encode(), b"tracefs", ctypes.c_ulong(0), None)
    if result != 0:
        err = ctypes.get_errno()
        raise EnvironmentProblem(f"cannot mount tracefs at {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    _libc().umount2(target.encode(), 0)


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def instance_name(pid: int | None = None) -> str:
    """The instance name for ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    start = process_start_ticks(pid)
    return f"{INSTANCE_PREFIX}{pid}_{start if start is not None else 0}"


def is_stale(name: str) -> bool:
    """True for one of our instance names whose owning process no longer exists.

    ``runstate_<pid>`` (no start time) counts as stale once that pid is gone;
    names this tool does not make are never touched.
    """
    m = _INSTANCE_NAME.match(name)
    if m is not None:
        start = process_start_ticks(int(m.group(1)))
        return start is None or start != int(m.group(2))
    tail = name[len(INSTANCE_PREFIX):] if name.startswith(INSTANCE_PREFIX) else ""
    return tail.isdigit() and process_start_ticks(int(tail)) is None


def list_instances(tracefs: Tracefs) -> list[str]:
    """Names of this tool's instances (live or stale)."""
    try:
        names = os.listdir(tracefs.root / "instances")
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(INSTANCE_PREFIX))


def remove_stale_instances(tracefs: Tracefs) -> list[str]:
    """Remove the instances left by killed runs; returns their names."""
    removed = []
    for name in list_instances(tracefs):
        if is_stale(name):
            _disable_and_remove(tracefs.root / "instances" / name)
            removed.append(name)
    return removed


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _write_quiet(path: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        _write(path, text)


def _disable_and_remove(path: Path, attempts: int = 100) -> None:
    """Stop tracing in an instance and rmdir it, retrying while a reader still holds it.

    The kernel releases a closed ``trace_pipe_raw`` a little later (tens of ms
    were measured), so EBUSY right after closing is retried for a few seconds.
    """
    _write_quiet(path / "tracing_on", "0")
    _write_quiet(path / "events" / "enable", "0")
    for _ in range(attempts):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise EnvironmentProblem(f"cannot remove tracefs instance {path}: "
                                         f"{err.strerror}") from None
            time.sleep(0.05)
    raise EnvironmentProblem(f"cannot remove tracefs instance {path}: still busy")


class TraceInstance:
    """One private tracefs instance; ``close()`` (or leaving ``with``) removes it.

    Use :meth:`create`; configure with :meth:`configure`; :meth:`start` and
    :meth:`stop` switch recording; :meth:`page_reader` reads the buffers.
    """

    def __init__(self, tracefs: Tracefs, path: Path) -> None:
        self.tracefs = tracefs
        self.path = path
        #: the events :meth:`configure` enabled
        self.events: list[str] = list(SCHED_EVENTS)
        self._readers: list[PageReader] = []
        self._closed = False

    @classmethod
    def create(cls, tracefs: Tracefs | None = None, name: str | None = None) -> TraceInstance:
        """Make a fresh instance, first removing leftovers of killed runs."""
        if os.geteuid() != 0:
            raise EnvironmentProblem("runstate record needs root (tracefs)")
        tracefs = find_tracefs() if tracefs is None else tracefs
        remove_stale_instances(tracefs)
        path = tracefs.root / "instances" / (instance_name() if name is None else name)
        try:
            os.mkdir(path)
        except FileExistsError:
            _disable_and_remove(path)
            os.mkdir(path)
        except OSError as err:
            raise EnvironmentProblem(f"cannot create tracefs instance {path}: "
                                     f"{err.strerror}") from None
        instance = cls(tracefs, path)
        _write_quiet(path / "tracing_on", "0")
        return instance

    @property
    def name(self) -> str:
        return self.path.name

    def configure(self, *, events: Iterable[str] = SCHED_EVENTS, pids: Iterable[int] | None = None,
                  buffer_kb: int = 4096, clock: str = "mono",
                  optional: Iterable[str] = TICK_EVENTS) -> list[str]:
        """Set clock, per-CPU buffer size, optional pid filter (following forks) and events.

        ``optional`` events are enabled where the kernel has them.  Returns the events
        enabled (names as :func:`~runstate.sources.linux.tpformat.event_dir` takes them).
        """
        self._set("trace_clock", clock)
        self._set("buffer_size_kb", str(buffer_kb))
        if pids is not None:
            self._set("options/event-fork", "1")
            self._set("set_event_pid", " ".join(str(p) for p in sorted(set(pids))))
        enabled = list(events) + [e for e in optional
                                  if (self.path / "events" / "/".join(event_dir(e))).exists()]
        for event in enabled:
            self._set(f"events/{'/'.join(event_dir(event))}/enable", "1")
        self.events = enabled
        return enabled

    def add_pids(self, pids: Iterable[int]) -> None:
        """Add tasks to the pid filter while tracing (a process that started later).

        The file is opened for appending: opening it otherwise empties the filter.
        """
        text = " ".join(str(p) for p in sorted(set(pids)))
        if not text:
            return
        path = self.path / "set_event_pid"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, text.encode("ascii") + b"\n")
            finally:
                os.close(fd)
        except OSError as err:
            raise EnvironmentProblem(f"cannot add pids to {path}: {err.strerror}") from None

    def resize(self, buffer_kb: int) -> None:
        """Change the per-CPU buffer size (allowed while tracing)."""
        self._set("buffer_size_kb", str(buffer_kb))

    def _set(self, relative: str, value: str) -> None:
        try:
            _write(self.path / relative, value)
        except OSError as err:
            raise EnvironmentProblem(f"cannot write {value!r} to {self.path / relative}: "
                                     f"{err.strerror}") from None

    def start(self) -> None:
        self._set("tracing_on", "1")

    def stop(self) -> None:
        _write_quiet(self.path / "tracing_on", "0")

    def cpus(self) -> list[int]:
        """CPU numbers that have a per-CPU buffer directory."""
        names = os.listdir(self.path / "per_cpu")
        return sorted(int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit())

    def page_size(self) -> int:
        """Bytes per ring-buffer page (sub-buffer)."""
        try:
            kb = int((self.path / "buffer_subbuf_size_kb").read_text().split()[0])
            return kb * 1024
        except (OSError, ValueError, IndexError):
            return os.sysconf("SC_PAGE_SIZE")

    def stats(self, cpu: int) -> CpuStats:
        return parse_stats((self.path / "per_cpu" / f"cpu{cpu}" / "stats").read_text())

    def read_file(self, relative: str) -> str:
        return (self.path / relative).read_text()

    def event_formats(self) -> dict[tuple[str, str], str]:
        """The format file of each enabled event, by (system, event)."""
        return {(system, name): self.format_text(f"events/{system}/{name}/format")
                for system, name in map(event_dir, self.events)}

    def format_text(self, relative: str) -> str:
        """A format description file, e.g. ``events/sched/sched_switch/format``."""
        return (self.tracefs.root / relative).read_text()

    def page_reader(self) -> PageReader:
        reader = PageReader(self.path, self.cpus(), self.page_size())
        self._readers.append(reader)
        return reader

    def close(self) -> None:
        """Stop, close every reader, remove the instance (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        for reader in self._readers:
            reader.close()
        _write_quiet(self.path / "events" / "enable", "0")
        _write_quiet(self.path / "set_event_pid", "")
        _disable_and_remove(self.path)

    def __enter__(self) -> TraceInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_stats(text: str) -> CpuStats:
    """Parse a ``per_cpu/cpuN/stats`` file."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        try:
            values[key.strip()] = int(value.strip().split()[0])
        except (ValueError, IndexError):
            continue
    return CpuStats(
        entries=values.get("entries", 0),
        overrun=values.get("overrun", 0),
        commit_overrun=values.get("commit overrun", 0),
        dropped=values.get("dropped events", 0),
        read_events=values.get("read events", 0),
    )


class PageReader:
    """Non-blocking readers of every CPU's ``trace_pipe_raw``.

    ``poll()`` yields ``(cpu, page)`` for what is ready now and never blocks;
    ``drain()`` reads everything left (after tracing stopped).
    """

    def __init__(self, instance_path: Path, cpus: list[int], page_size: int) -> None:
        self.page_size = page_size
        self.cpus = cpus
        self._fds: dict[int, int] = {}
        self._threshold = int((page_size - PAGE_HEADER_BYTES) * _CAUGHT_UP_FRACTION)
        try:
            for cpu in cpus:
                path = instance_path / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw"
                self._fds[cpu] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            self.close()
            raise EnvironmentProblem(f"cannot open {instance_path}/per_cpu: "
                                     f"{err.strerror}") from None

    def poll(self) -> Iterator[tuple[int, bytes]]:
        """Pages ready now; per CPU, stop at the first page that is not nearly full."""
        for cpu in self.cpus:
            for page in self.poll_cpu(cpu)[0]:
                yield cpu, page

    def poll_cpu(self, cpu: int) -> tuple[list[bytes], bool]:
        """One CPU's ready pages, and True if the buffer was empty at the end.

        False means reading stopped at a partly filled page: more events may be
        buffered, all of them later than the pages returned.
        """
        fd = self._fds[cpu]
        pages: list[bytes] = []
        partly_filled = 0
        while True:
            page = self._read(fd)
            if page is None:
                return pages, True
            pages.append(page)
            # the writer was on a partly filled page: one more read tells whether the
            # buffer is empty now (a second such page means events keep coming)
            if page_data_length(page) < self._threshold:
                partly_filled += 1
                if partly_filled == 2:
                    return pages, False

    def drain(self, max_pages: int = 1 << 22) -> Iterator[tuple[int, bytes]]:
        """Everything still buffered, up to an empty read (tracing must be off)."""
        for cpu, fd in self._fds.items():
            for _ in range(max_pages):
                page = self._read(fd)
                if page is None:
                    break
                yield cpu, page

    def _read(self, fd: int) -> bytes | None:
        try:
            page = os.read(fd, self.page_size)
        except BlockingIOError:
            return None
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EINTR):
                return None
            raise
        if len(page) < PAGE_HEADER_BYTES or page_data_length(page) == 0:
            return None
        if len(page) < self.page_size:
            page += bytes(self.page_size - len(page))
        return page

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def page_data_length(page: bytes) -> int:
    """Data bytes in one raw page (the commit word without its flag bits)."""
    return int.from_bytes(page[8:12], "little") & _COMMIT_LENGTH_MASK
