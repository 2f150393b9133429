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
from dataclasses import replace

from runstate.engine.core import Engine
from runstate.errors import RunstateError
from runstate.live.engine_view import live_domains
from runstate.live.snapshot import LiveDomain, LiveSnapshot
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source


def _in_ns(domain: LiveDomain, scale: float) -> LiveDomain:
    """A domain's figures in ns (Xen streams count TSC cycles)."""
    if scale == 1.0:
        return domain
    return replace(
        domain, since_ns=None if domain.since_ns is None else int(domain.since_ns * scale),
        totals_ns={s: int(v * scale) for s, v in domain.totals_ns.items()},
        member_ns={b: int(v * scale) for b, v in domain.member_ns.items()},
        member_rows=tuple(replace(m, totals_ns={b: int(v * scale)
                                                for b, v in m.totals_ns.items()})
                          for m in domain.member_rows))


class StreamMonitor:
    """Monitor-like reader of a trace stream (``path`` ``-`` is stdin)."""

    source = "stream"

    def __init__(self, path: str = "-", options: ReadOptions | None = None,
                 input_format: str | None = None) -> None:
        self._source = open_source(path, options or ReadOptions(), input_format)
        self._engine = Engine(self._source.registry)
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
            result = self._engine.snapshot()
            states = self._engine.member_states()
            registry = self._source.registry
            scale = self._ns_per_tick()
            domains = tuple(_in_ns(d, scale)
                            for d in live_domains(result, states, registry, with_members))
        info = self._source.info
        notes = tuple(info.notes) if hasattr(info, "notes") else ()
        return LiveSnapshot(time_ns=int(result.end_ticks * scale),
                            started_ns=int(result.start_ticks * scale), source=self.source,
                            n_cpus=os.cpu_count() or 1,
                            lost_events=sum(d.missed for d in domains), domains=domains,
                            notes=notes)

    def _ns_per_tick(self) -> float:
        hz = self._source.info.cpu_hz
        return 1e9 / hz if hz else 1.0

    def stop(self) -> None:
        """The reader thread ends with its input; nothing is held in the kernel."""
