"""CSV rendering: one row per domain (scope ``total``) and per interval and domain.

Column names carry their units (``_ns``, ``_pct``).  Interval rows leave the
episode columns empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from runstate.model.states import DomainState
from runstate.report.model import DomainRow, IntervalRow, Report

_EPISODE_FIELDS = ("count", "p50_ns", "p95_ns", "p99_ns", "max_ns")


def header() -> list[str]:
    cols = ["scope", "start_ns", "end_ns", "domain", "name", "members_seen", "lifetime_ns"]
    for s in DomainState:
        cols += [f"{s.label}_ns", f"{s.label}_pct"]
        cols += [f"{s.label}_{f}" for f in _EPISODE_FIELDS]
    return cols


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header())
    for d in report.domains:
        writer.writerow(_domain_row(report, d))
    names = {d.domain: d.name for d in report.domains}
    writer.writerows(interval_rows(report.intervals, names))
    return out.getvalue()


def interval_rows(intervals: Iterable[IntervalRow], names: dict[str, str]) -> list[list[str]]:
    rows = []
    for interval in intervals:
        for key, states in interval.domains.items():
            if key not in names:
                continue
            life = sum(states.values())
            row = ["interval", str(interval.start_ns), str(interval.end_ns), key, names[key],
                   "", str(life)]
            for s in DomainState:
                row += [str(states[s]), _pct(states[s], life)] + [""] * len(_EPISODE_FIELDS)
            rows.append(row)
    return rows


def _domain_row(report: Report, d: DomainRow) -> list[str]:
    row = ["total", str(report.start_ns), str(report.end_ns), d.domain, d.name,
           str(d.members_seen), str(d.lifetime_ns)]
    for s in DomainState:
        st = d.states[s]
        row += [str(st.ns), _pct(st.ns, d.lifetime_ns)]
        row += [str(getattr(st, f)) for f in _EPISODE_FIELDS]
    return row


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}" if whole else "0.00"
