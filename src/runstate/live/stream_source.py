"""A live view of any streaming trace: ``runstate top -``.

Whatever the report reader takes on stdin (``xentrace -D ... /dev/stdout``, a
CSV or JSON Lines event stream, ``perf script`` text ...) is read in a
background thread through the registry and fed to an engine; snapshots are the
engine's figures up to the last event read.  The stream's clock is its own, so
times are converted to ns only where the source gives a TSC frequency.
"""

from __future__ import annotations

import os
import threading

from runstate.engine.core import Engine
from runstate.errors import RunstateError
from runstate.live.engine_view import EngineView
from runstate.live.snapshot import LiveSnapshot
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source


class StreamMonitor:
    """Monitor-like reader of a trace stream (``path`` ``-`` is stdin)."""

    source = "stream"

    def __init__(self, path: str = "-", options: ReadOptions | None = None,
                 input_format: str | None = None) -> None:
        self._source = open_source(path, options or ReadOptions(), input_format)
        self._engine = Engine(self._source.registry)
        self._view = EngineView(self._source.registry)
        self._lock = threading.Lock()
        self.error: RunstateError | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._read, name="runstate-stream", daemon=True)

    def start(self) -> StreamMonitor:
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            for batch in self._source.batches():
                with self._lock:
                    self._engine.feed(batch)
        except RunstateError as error:
            self.error = error
        finally:
            self.finished.set()

    @property
    def started(self) -> bool:
        return self._engine.start_ticks is not None

    def snapshot(self, with_members: bool = True, at_ns: int | None = None
                 ) -> LiveSnapshot | None:
        """Figures up to the last event read (None before the first event).

        ``at_ns`` is not used: the stream's clock is its own, not this host's.
        """
        with self._lock:
            if self._engine.start_ticks is None:
                return None
            totals = self._engine.live_totals(with_members=with_members)
            scale = self._ns_per_tick()
            domains = self._view.domains(totals, with_members, scale)
        info = self._source.info
        notes = tuple(info.notes) if hasattr(info, "notes") else ()
        return LiveSnapshot(time_ns=int(totals.end_ticks * scale),
                            started_ns=int(totals.start_ticks * scale), source=self.source,
                            n_cpus=os.cpu_count() or 1,
                            lost_events=int(domains.table.missed.sum()), domains=domains,
                            notes=notes)

    def _ns_per_tick(self) -> float:
        hz = self._source.info.cpu_hz
        return 1e9 / hz if hz else 1.0

    def stop(self) -> None:
        """The reader thread ends with its input; nothing is held in the kernel."""
