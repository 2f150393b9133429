"""The Chrome trace-event JSON format, for viewers that read only that.

``{"traceEvents": [...]}`` with ``X`` (complete) slices, ``M`` process and
thread names, ``C`` counters (each domain's state shares per interval) and
``i`` instants (lost data, anomalies).  Timestamps are µs written as exact
decimals (``1234.567`` is 1 234 567 ns), and each slice also carries its exact
``start_ns``/``end_ns`` in ``args``.  Events are written as slices arrive, so
memory does not grow with the trace.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from runstate.engine.timeline import Lane, SliceBatch
from runstate.export.layout import TrackNames
from runstate.model.states import DomainState
from runstate.report.model import Clock, Report
from runstate.report.palette import DOMAIN_ORDER


def micros(ns: int) -> str:
    """ns as an exact decimal number of µs."""
    sign = "-" if ns < 0 else ""
    whole, frac = divmod(abs(ns), 1000)
    return f"{sign}{whole}.{frac:03d}"


class ChromeJsonWriter:
    """A slice sink writing trace events to a text stream; call :meth:`close` at the end."""

    def __init__(self, out: TextIO, names: TrackNames, clock: Clock) -> None:
        self._out = out
        self._names = names
        self._clock = clock
        self._first = True
        out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        self._metadata()

    def _event(self, fields: dict[str, Any], ts_ns: int | None = None,
               dur_ns: int | None = None) -> None:
        text = json.dumps(fields, separators=(",", ":"))[:-1]
        if ts_ns is not None:
            text += f',"ts":{micros(ts_ns)}'
        if dur_ns is not None:
            text += f',"dur":{micros(dur_ns)}'
        self._out.write(("" if self._first else ",\n") + text + "}")
        self._first = False

    def _metadata(self) -> None:
        registry = self._names.registry
        for d in range(registry.n_domains):
            pid = self._names.pid(d)
            self._event({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                         "args": {"name": self._names.process_name(d)}})
            self._event({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                         "args": {"sort_index": pid}})
            self._thread(d, Lane.DOMAIN, d, 0)
        for m, info in enumerate(registry.members):
            self._thread(info.domain, Lane.MEMBER, m, m + 1)

    def _thread(self, domain: int, lane: Lane, owner: int, rank: int) -> None:
        pid, tid = self._names.pid(domain), self._names.tid(lane, owner)
        self._event({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                     "args": {"name": self._names.thread_name(lane, owner)}})
        self._event({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                     "args": {"sort_index": rank}})

    def __call__(self, batch: SliceBatch) -> None:
        names, at = self._names, self._clock.at
        lane = batch.lane
        cat = "domain" if lane == Lane.DOMAIN else "member"
        rows = zip(batch.owner.tolist(), batch.start.tolist(), batch.end.tolist(),
                   batch.state.tolist(), strict=True)
        for owner, start, end, code in rows:
            a, b = at(start), at(end)
            pid = names.pid(names.domain_of(lane, owner))
            tid = names.tid(lane, owner)
            name = names.slice_name(lane, owner, code)
            self._event({"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid,
                         "args": {"start_ns": a, "end_ns": b,
                                  "color": names.color(lane, code)}}, a, b - a)
            if lane == Lane.DOMAIN and code == DomainState.LOST:
                self._event({"ph": "i", "s": "t", "cat": "lost", "name": "lost data",
                             "pid": pid, "tid": tid}, a)

    def close(self, report: Report) -> None:
        """Counters and anomalies from the report, then the closing bracket."""
        self._counters(report)
        if report.anomalies:
            self._event({"ph": "i", "s": "g", "cat": "anomaly", "name": "anomalies",
                         "pid": 0, "tid": 0, "args": dict(report.anomalies)}, report.start_ns)
        self._out.write("\n]}\n")

    def _counters(self, report: Report) -> None:
        index = {info.key: d for d, info in enumerate(self._names.registry.domains)}
        for interval in report.intervals:
            for key, per_state in interval.domains.items():
                alive = sum(per_state.values())
                if key not in index or alive == 0:
                    continue
                shares = {s.label: round(100 * per_state[s] / alive, 3) for s in DOMAIN_ORDER}
                self._event({"ph": "C", "name": "state share %", "pid": self._names.pid(
                    index[key]), "tid": 0, "args": shares}, interval.start_ns)
        if report.intervals:
            last = report.intervals[-1]
            for key in last.domains:
                if key in index:
                    self._event({"ph": "C", "name": "state share %",
                                 "pid": self._names.pid(index[key]), "tid": 0,
                                 "args": {s.label: 0 for s in DOMAIN_ORDER}}, last.end_ns)
