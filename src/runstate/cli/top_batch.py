"""``runstate top --batch``: one record per interval, no screen control.

``--format json`` writes one ``runstate.report/1``-shaped document per line,
covering the interval; each domain also carries ``current_state``,
``since_ns`` (source clock) and ``totals`` (ns per state since the monitor
started, the current stay included).  Live figures have no episode
statistics: a state carries ``ns`` and ``share``.  ``--format csv`` writes one
row per domain and interval under a header.
"""

from __future__ import annotations

import csv
import json
from typing import Any, TextIO

from runstate.cli.top_rows import STATES, DomainRow, Interval
from runstate.model.states import MEMBER_BUCKETS

SCHEMA = "runstate.report/1"
#: state names, computed once (a record of thousands of domains names each state often)
LABELS = tuple((s, s.label) for s in STATES)


def interval_document(iv: Interval, busy_pct: float | None) -> dict[str, Any]:
    """The interval as a report document."""
    return {
        "schema": SCHEMA,
        "source": {"path": f"live:{iv.source}", "format": f"live-{iv.source}",
                   "clock": "mono" if iv.source != "stream" else "trace",
                   "notes": list(iv.notes), "provisional": True},
        "window": {"start_ns": iv.start_ns, "end_ns": iv.end_ns,
                   "duration_ns": iv.length_ns},
        "cpu_hz": None,
        "cpu_hz_assumed": False,
        "host": {"cpus": iv.n_cpus, "busy_pct": busy_pct, "lost_events": iv.lost_events},
        "domains": [_domain(d) for d in iv.domains],
        "host_idle": [],
        "intervals": [],
        "anomalies": {"lost_events": iv.lost_events},
    }


def _domain(d: DomainRow) -> dict[str, Any]:
    return {
        "domain": d.key,
        "name": d.name,
        "members_seen": d.members,
        "members_expected": None,
        "lifetime_ns": d.time_ns,
        "current_state": None if d.current_state is None else d.current_state.label,
        "since_ns": d.since_ns,
        "changes": d.changes,
        "lost_intervals": d.missed,
        "states": {label: {"ns": d.ns[s], "share": round(d.share(s) / 100.0, 6)}
                   for s, label in LABELS},
        "totals": {label: d.totals_ns.get(s, 0) for s, label in LABELS},
        "member_run_pct": round(d.run_pct, 3),
        "member_ready_pct": round(d.ready_pct, 3),
        "members": [{"member": m.key, "name": m.name, "state": m.state,
                     "states": {b: {"ns": m.ns.get(b, 0)} for b in MEMBER_BUCKETS}}
                    for m in d.member_rows],
    }


def write_json(out: TextIO, iv: Interval, busy_pct: float | None) -> None:
    out.write(json.dumps(interval_document(iv, busy_pct), separators=(",", ":")) + "\n")
    out.flush()


CSV_COLUMNS = (
    ["start_ns", "end_ns", "source", "domain", "name", "members"]
    + [f"{s.label}_ns" for s in STATES]
    + [f"{s.label}_pct" for s in STATES]
    + ["member_run_pct", "member_ready_pct", "current_state", "since_ns", "missed"]
)


class CsvWriter:
    """Rows of every interval under one header."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._writer = csv.writer(out, lineterminator="\n")
        self._writer.writerow(CSV_COLUMNS)

    def write(self, iv: Interval) -> None:
        for d in iv.domains:
            self._writer.writerow(
                [iv.start_ns, iv.end_ns, iv.source, d.key, d.name, d.members]
                + [d.ns[s] for s in STATES]
                + [f"{d.share(s):.2f}" for s in STATES]
                + [f"{d.run_pct:.2f}", f"{d.ready_pct:.2f}",
                   "" if d.current_state is None else d.current_state.label,
                   "" if d.since_ns is None else d.since_ns, d.missed])
        self.out.flush()
