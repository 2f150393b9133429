"""Incremental decoding of a running tracefs instance, for live views.

:class:`LiveSchedStream` polls every CPU's pages, decodes them with the
instance's own format files and returns the events that can no longer be
preceded by a later read: a poll reads each CPU until it has caught up, so
every event still unread was stamped after the poll began (minus a small
slack for writes in flight), except on a CPU where reading stopped at a
partly filled page: there, unread events are later than the last one read.
The watermark is the earliest of those bounds; events after it wait for the
next poll, so what is returned is time-sorted across calls.
"""

from __future__ import annotations

import time

import numpy as np

from runstate.live.tracefs import PageReader, TraceInstance
from runstate.sources.linux.schedevents import SchedEvents
from runstate.sources.linux.tpformat import parse_format
from runstate.sources.linux.tracefs_raw import LossWindow, PageStreamDecoder, SchedDecoder

#: events stamped up to this long before a poll may still be in flight
IN_FLIGHT_NS = 2_000_000


class LiveSchedStream:
    """Time-sorted SchedEvents (and loss windows) from a started instance."""

    def __init__(self, instance: TraceInstance, start_ns: int | None = None) -> None:
        formats = {name: parse_format(text, system)
                   for (system, name), text in instance.event_formats().items()}
        decoder = SchedDecoder(formats)
        self.reader: PageReader = instance.page_reader()
        self._decoders = {cpu: PageStreamDecoder(decoder, self.reader.page_size, cpu,
                                                 f"{instance.path}/per_cpu/cpu{cpu}", start_ns)
                          for cpu in self.reader.cpus}
        self._held = SchedEvents.concat([])
        self.comms: dict[int, str] = {}
        self.losses: list[LossWindow] = []
        #: every event up to this time has been returned (None before the first poll)
        self.watermark_ns: int | None = None
        #: pages per second the busiest CPU filled between the last two polls
        self.pages_per_s = 0.0
        self._polled_ns: int | None = None

    def poll(self) -> SchedEvents:
        """Events that are final now, sorted by time."""
        now = time.monotonic_ns()
        watermark = now - IN_FLIGHT_NS
        pages: dict[int, list[bytes]] = {}
        partial: list[int] = []
        for cpu in self.reader.cpus:
            pages[cpu], caught_up = self.reader.poll_cpu(cpu)
            if not caught_up:
                partial.append(cpu)
        if self._polled_ns is not None and now > self._polled_ns:
            busiest = max((len(p) for p in pages.values()), default=0)
            self.pages_per_s = busiest * 1e9 / (now - self._polled_ns)
        self._polled_ns = now
        return self._release(pages, watermark, partial)

    def drain(self) -> SchedEvents:
        """Everything left (call after the instance stopped tracing)."""
        pages: dict[int, list[bytes]] = {}
        for cpu, page in self.reader.drain():
            pages.setdefault(cpu, []).append(page)
        return self._release(pages, None, [])

    def _release(self, pages: dict[int, list[bytes]], watermark: int | None,
                 partial: list[int]) -> SchedEvents:
        parts = [self._held]
        for cpu, chunk in sorted(pages.items()):
            if not chunk:
                continue
            decoded = self._decoders[cpu].decode(b"".join(chunk), 0)
            self.comms.update(decoded.comms)
            self.losses.extend(decoded.losses)
            parts.append(decoded.events)
        for cpu in partial:
            last = self._decoders[cpu].last_event_ns
            if watermark is not None and last is not None:
                watermark = min(watermark, last)
        merged = SchedEvents.concat(parts)
        merged = merged.take(np.argsort(merged.time, kind="stable"))
        cut = len(merged) if watermark is None else \
            int(np.searchsorted(merged.time, watermark, side="right"))
        self._held = merged.take(np.arange(cut, len(merged)))
        if watermark is not None:
            self.watermark_ns = max(watermark, self.watermark_ns or watermark)
        return merged.take(np.arange(cut))
