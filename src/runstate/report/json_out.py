"""JSON rendering.  The schema (``runstate.report/1``) is documented in docs/json-schema.md.

Every domain lists all seven states, always; TSC sources add exact ``cycles``.
"""

from __future__ import annotations

import json
from typing import Any

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
    return json.dumps(report_to_dict(report), indent=2) + "\n"


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
