"""``Monitor``: the domain runstate counters of this host's VMs or thread groups, live.

A monitor follows the tasks a :class:`~runstate.live.snapshot.Selection` names
and can be read at any moment, like the per-domain counters a hypervisor keeps:
current state, when it was entered, ns per state so far and missed changes.

Sources, best first:

``bpf``
    the project's eBPF program keeps the counters inside the kernel (about 190 ns
    per scheduler event, no event lost); needs root, the kernel's BTF and
    libbpf.so.1.
``tracefs``
    a private tracefs instance read incrementally and fed through the same
    converter and engine as a recording; buffer overruns become ``lost`` time.

``source="auto"`` takes the first that starts and :attr:`Monitor.source` says
which; :attr:`Monitor.fallback_notes` say why the others did not.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from types import FrameType, TracebackType
from typing import Protocol

from runstate.errors import EnvironmentProblem, UsageError
from runstate.live import SOURCES
from runstate.live.snapshot import LiveSnapshot, Selection
from runstate.live.tasks import TaskCatalog

__all__ = ["SOURCES", "LiveSource", "Monitor", "StopOnSignals", "open_source"]


class LiveSource(Protocol):
    """What a monitor needs from a source."""

    name: str

    def refresh(self) -> None: ...

    def snapshot(self, with_members: bool = True, at_ns: int | None = None
                 ) -> LiveSnapshot: ...

    def close(self) -> None: ...


def open_source(name: str, catalog: TaskCatalog) -> LiveSource:
    """Start source ``name`` (``bpf`` or ``tracefs``) on the catalog's tasks."""
    if name == "bpf":
        from runstate.live.bpf.source import BpfSource

        return BpfSource(catalog)
    if name == "tracefs":
        from runstate.live.tracefs_source import TracefsSource

        return TracefsSource(catalog)
    raise UsageError(f"unknown live source {name!r} (choose from {', '.join(SOURCES)})")


class Monitor:
    """Live domain runstate counters for the tasks ``select`` names.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (stop is
    idempotent and always releases what the source holds in the kernel).
    """

    def __init__(self, select: Selection, source: str = "auto") -> None:
        if source not in SOURCES:
            raise UsageError(f"unknown live source {source!r} (choose from "
                             f"{', '.join(SOURCES)})")
        self.select = select
        self.requested = source
        self.source: str | None = None
        self.fallback_notes: list[str] = []
        self._source: LiveSource | None = None
        self._catalog: TaskCatalog | None = None
        self._lock = threading.Lock()

    def start(self) -> Monitor:
        """Find the tasks and start counting; raises EnvironmentProblem if no source works."""
        if self._source is not None:
            return self
        catalog = self._catalog = TaskCatalog(self.select)
        names = ("bpf", "tracefs") if self.requested == "auto" else (self.requested,)
        problems = []
        for name in names:
            try:
                self._source = open_source(name, catalog)
            except EnvironmentProblem as problem:
                problems.append(str(problem))
                continue
            self.source = name
            break
        else:
            raise EnvironmentProblem("; ".join(problems) if len(problems) > 1 else
                                     problems[0])
        self.fallback_notes = [f"{p}: using {self.source}" for p in problems]
        return self

    def refresh(self) -> None:
        """Follow processes that appeared since the start (a VM started later)."""
        with self._lock:
            if self._source is not None:
                self._source.refresh()

    def snapshot(self, with_members: bool = True, at_ns: int | None = None) -> LiveSnapshot:
        """Every domain's counters now (``with_members=False`` skips the member rows).

        ``at_ns`` (CLOCK_MONOTONIC ns, not in the future) asks for the counters at
        that moment, so that consecutive snapshots are evenly spaced: the tracefs
        source waits until its events have passed it; the bpf counters are read
        when called, so call it at that moment.
        """
        with self._lock:
            if self._source is None or self._catalog is None:
                raise UsageError("the monitor is not started")
            snap = self._source.snapshot(with_members, at_ns)
            waiting = self._catalog.waiting_vms
        notes = [*self.fallback_notes,
                 *(f"--vm {name}: not running (followed once it starts)" for name in waiting)]
        if notes:
            snap = _with_notes(snap, tuple(notes))
        return snap

    def stop(self) -> None:
        """Stop counting and release the kernel objects and tracefs instance (idempotent)."""
        with self._lock:
            source, self._source = self._source, None
        if source is not None:
            source.close()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _with_notes(snap: LiveSnapshot, notes: tuple[str, ...]) -> LiveSnapshot:
    return LiveSnapshot(time_ns=snap.time_ns, started_ns=snap.started_ns, source=snap.source,
                        n_cpus=snap.n_cpus, lost_events=snap.lost_events,
                        domains=snap.domains, cpu_idle_ns=snap.cpu_idle_ns,
                        notes=(*notes, *snap.notes))


class StopOnSignals:
    """Turns SIGTERM (and SIGINT) into a stop request while a monitor runs.

    The first signal only sets an event, so the main loop ends normally and
    every ``finally`` releases what the monitor holds.  A second one acts as
    if no handler were installed (a process blocked writing to a full pipe
    never returns to the loop); the kernel still frees the BPF objects and the
    next start removes a tracefs instance left behind.  The previous handlers
    come back on exit.

    A loop sleeps in :meth:`wait` (or :meth:`sleep`): a ``select`` that any signal
    ends, whichever thread the kernel delivered it to (the signal module writes
    to a pipe it watches), where an Event's wait would run the threading
    module's Python code, which a loop woken once a second finds out of the
    caches each time.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
                 ) -> None:
        self.stop = threading.Event()
        self._signals = signals
        self._previous: dict[signal.Signals, object] = {}
        self._pipe: tuple[int, int] | None = None
        self._previous_wakeup = -1

    def wait(self, fds: list[int], seconds: float) -> list[int]:
        """Those of ``fds`` readable within ``seconds``; [] at once when a signal came
        (then look at :attr:`stop`: its handler has run by the time this returns)."""
        assert self._pipe is not None, "StopOnSignals is used as a context manager"
        wakeup = self._pipe[0]
        ready, _, _ = select.select([*fds, wakeup], [], [], max(0.0, seconds))
        if wakeup in ready:
            with contextlib.suppress(OSError):  # the signals' bytes: nothing more to read
                while os.read(wakeup, 512):
                    pass
            return []
        return ready

    def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` or until a signal comes."""
        self.wait([], seconds)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
        for sig in self._signals:
            signal.signal(sig, signal.SIG_DFL)

    def __enter__(self) -> StopOnSignals:
        self._pipe = os.pipe()
        for fd in self._pipe:
            os.set_blocking(fd, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_wakeup)
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
