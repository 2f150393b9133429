"""JSON rendering.  The schema (``runstate.report/1``) is documented in docs/json-schema.md.

Every domain lists all seven states, always; TSC sources add exact ``cycles``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from itertools import islice
from typing import Any, TextIO

from runstate.model.states import DomainState
from runstate.report.model import DomainRow, IntervalRow, Report

SCHEMA = "runstate.report/1"


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "source": {"path": report.source, "format": report.format, "clock": report.clock,
                   "notes": list(report.notes), "provisional": report.provisional},
        "window": {"start_ns": report.start_ns, "end_ns": report.end_ns,
                   "duration_ns": report.duration_ns},
        "cpu_hz": report.cpu_hz,
        "cpu_hz_assumed": report.cpu_hz_assumed,
        "domains": [_domain(d) for d in report.domains],
        "host_idle": [_domain(d) for d in report.host_idle],
        "intervals": [interval_to_dict(i) for i in report.intervals],
        "anomalies": dict(report.anomalies),
    }


def render_json(report: Report) -> str:
    """The document exactly as :class:`JsonStream` writes it while the analysis runs."""
    out = io.StringIO()
    stream = JsonStream(out, several=False)
    stream.begin()
    for row in report.intervals:
        stream.intervals(row, [(row.start_ns, row.end_ns)])
    stream.end(report)
    stream.close()
    return out.getvalue()


def interval_to_dict(interval: IntervalRow) -> dict[str, Any]:
    return {
        "start_ns": interval.start_ns,
        "end_ns": interval.end_ns,
        "domains": [
            {"domain": key, "states": {s.label: {"ns": ns} for s, ns in states.items()}}
            for key, states in interval.domains.items()
        ],
    }


def _domain(d: DomainRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "domain": d.domain,
        "name": d.name,
        "members_seen": d.members_seen,
        "members_expected": d.members_expected,
        "lifetime_ns": d.lifetime_ns,
    }
    if d.lifetime_cycles is not None:
        out["lifetime_cycles"] = d.lifetime_cycles
    out["current_state"] = None if d.current_state is None else d.current_state.label
    out["changes"] = d.changes
    out["lost_intervals"] = d.lost_intervals
    if d.uncertain:
        out["uncertain_ns"] = dict(d.uncertain)
    out["states"] = {s.label: _state(d, s) for s in DomainState}
    out["members"] = [
        {"member": m.member, "name": m.name,
         "states": {bucket: {"ns": ns} for bucket, ns in m.ns.items()}}
        for m in d.members
    ]
    return out


def _state(d: DomainRow, s: DomainState) -> dict[str, Any]:
    row = d.states[s]
    out: dict[str, Any] = {"ns": row.ns}
    if row.cycles is not None:
        out["cycles"] = row.cycles
    out.update(share=round(d.share(s), 6), count=row.count, p50_ns=row.p50_ns,
               p95_ns=row.p95_ns, p99_ns=row.p99_ns, max_ns=row.max_ns)
    return out


class JsonStream:
    """One JSON document (or ``{"reports": [...]}``) written while the reports are computed.

    Interval items are written as each interval finishes, one compact item per
    line, so memory does not grow with their number.  The report's other keys
    follow its ``intervals`` (JSON objects are unordered; the schema is the
    same as :func:`report_to_dict`'s).
    """

    def __init__(self, sink: TextIO, several: bool) -> None:
        self._sink = sink
        self._several = several
        self._pad = "    " if several else ""
        self._reports = 0
        self._items = 0
        if several:
            sink.write('{\n  "reports": [\n')

    def begin(self) -> None:
        """Open one report, up to its ``intervals`` list."""
        pad = self._pad
        self._sink.write(("," + "\n" if self._reports else "")
                         + f'{pad}{{\n{pad}  "schema": "{SCHEMA}",\n{pad}  "intervals": [')
        self._items = 0

    def intervals(self, row: IntervalRow, spans: Iterable[tuple[int, int]]) -> None:
        """Items with ``row``'s figures, one per (start_ns, end_ns) of ``spans``."""
        figures = json.dumps(interval_to_dict(row)["domains"])
        lead = f",\n{self._pad}    "
        pending = iter(spans)
        while chunk := list(islice(pending, 4096)):
            text = "".join([f'{lead}{{"start_ns": {start}, "end_ns": {end}, '
                            f'"domains": {figures}}}' for start, end in chunk])
            self._sink.write(text if self._items else text[1:])  # no comma before the first
            self._items += len(chunk)

    def end(self, report: Report) -> None:
        """Close the report with every key but ``schema`` and ``intervals``."""
        doc = report_to_dict(report)
        del doc["schema"], doc["intervals"]
        pad = self._pad
        body = json.dumps(doc, indent=2)[1:-1].strip("\n")
        lines = "\n".join(pad + line for line in body.split("\n"))
        closing = f"\n{pad}  ]" if self._items else "]"
        self._sink.write(f"{closing},\n{lines}\n{pad}}}")
        self._reports += 1

    def close(self) -> None:
        self._sink.write("\n  ]\n}\n" if self._several else "\n")
