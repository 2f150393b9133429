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
import functools
import json
from collections.abc import Iterator
from typing import Any, TextIO, cast

import numpy as np

from runstate.cli.top_rows import STATES, Interval, MemberRow, RowTable
from runstate.model.states import MEMBER_BUCKETS, DomainState

SCHEMA = "runstate.report/1"
#: state names, computed once (a record of thousands of domains names each state often)
LABELS = tuple((s, s.label) for s in STATES)
#: one domain of a JSON record, filled from the interval's columns: thousands of domains
#: per interval are written without a dictionary per domain
DOMAIN_JSON = (
    '{%s"members_seen":%d,"members_expected":null,"lifetime_ns":%d,"current_state":%s,'
    '"since_ns":%s,"changes":%d,"lost_intervals":%d,"states":{%s},"totals":{'
    + ",".join(f'"{label}":%d' for _, label in LABELS)
    + '},"member_run_pct":%r,"member_ready_pct":%r,"members":%s}')
STATES_JSON = ",".join(f'"{label}":{{"ns":%d,"share":%r}}' for _, label in LABELS)
_STATE_JSON = ["null", *(json.dumps(label) for _, label in LABELS)]


def _head(iv: Interval, busy_pct: float | None) -> dict[str, Any]:
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
    }


#: domains per piece of a JSON record: a record of thousands of domains is made and
#: written a piece at a time, so each piece's text reuses the memory of the one before
#: (a process woken once a second finds what it touched a second ago out of the caches)
PIECE = 128


def interval_json(iv: Interval, busy_pct: float | None) -> str:
    """The interval as one line of JSON, a ``runstate.report/1``-shaped document."""
    return "".join(json_pieces(iv, busy_pct))


def json_pieces(iv: Interval, busy_pct: float | None) -> Iterator[str]:
    """The interval's JSON document in pieces (their concatenation is the document)."""
    head = json.dumps(_head(iv, busy_pct), separators=(",", ":"))
    tail = json.dumps({"host_idle": [], "intervals": [],
                       "anomalies": {"lost_events": iv.lost_events}}, separators=(",", ":"))
    yield head[:-1] + ',"domains":['
    shared: dict[tuple[int, ...], str] = {}
    for start in range(0, len(iv.table), PIECE):
        yield ("," if start else "") + ",".join(
            domain_json(iv.table, slice(start, start + PIECE), shared))
    yield "]," + tail[1:]


def domain_json(t: RowTable, rows: slice, shared: dict[tuple[int, ...], str]) -> list[str]:
    """Each domain of the table's ``rows`` as a JSON object; ``shared``: the ``states``
    texts made so far, by figures."""
    end = t.end
    ns = t.ns[rows]
    state_codes = end.state[rows].tolist()
    states = [_STATE_JSON[code + 1] for code in state_codes]
    since = [str(v) if code >= 0 else "null"
             for v, code in zip(end.since_ns[rows].tolist(), state_codes, strict=True)]
    members = (["[]"] * len(state_codes) if t.member_rows is None else
               [json.dumps([_member(m) for m in domain], separators=(",", ":"))
                for domain in t.member_rows[rows]])
    columns = [[_named(k, n) for k, n in zip(end.keys[rows], end.names[rows], strict=True)],
               end.members[rows].tolist(), ns.sum(axis=1).tolist(), states, since,
               end.changes[rows].tolist(), end.missed[rows].tolist(),
               _states_json(ns.tolist(), shared),
               *end.totals_ns[rows].T.tolist(), np.round(t.run_pct[rows], 3).tolist(),
               np.round(t.ready_pct[rows], 3).tolist(), members]
    return [DOMAIN_JSON % row for row in zip(*columns, strict=True)]


def _states_json(ns: list[list[int]], texts: dict[tuple[int, ...], str]) -> list[str]:
    """Each domain's ``states`` object (ns and share of the domain's time per state);
    domains with the same figures share one text (thousands of sleeping threads
    spend an interval alike), kept in ``texts``."""
    out = []
    for row in ns:
        key = tuple(row)
        text = texts.get(key)
        if text is None:
            total = sum(key)
            pairs = [v for ns_value in key
                     for v in (ns_value, round(ns_value / total, 6) if total else 0.0)]
            text = texts[key] = STATES_JSON % tuple(pairs)
        out.append(text)
    return out


@functools.lru_cache(maxsize=1 << 16)
def _named(key: str, name: str) -> str:
    """A domain's key and name as the start of its JSON object (they come back every
    interval)."""
    return f'"domain":{json.dumps(key)},"name":{json.dumps(name)},'


def _member(m: MemberRow) -> dict[str, Any]:
    return {"member": m.key, "name": m.name, "state": m.state,
            "states": {b: {"ns": m.ns.get(b, 0)} for b in MEMBER_BUCKETS}}


def write_json(out: TextIO, iv: Interval, busy_pct: float | None) -> None:
    """The interval's JSON document as one line, written a piece at a time."""
    for piece in json_pieces(iv, busy_pct):
        out.write(piece)
    out.write("\n")
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
        t, end = iv.table, iv.table.end
        lifetime = t.ns.sum(axis=1)
        percent = np.zeros(t.ns.shape, np.float64)
        np.divide(100.0 * t.ns, lifetime[:, None], out=percent, where=lifetime[:, None] > 0)
        n = len(t)
        percent_columns = cast("list[list[float]]", percent.T.tolist())
        columns = [[iv.start_ns] * n, [iv.end_ns] * n, [iv.source] * n, end.keys, end.names,
                   end.members.tolist(), *t.ns.T.tolist(),
                   *([f"{v:.2f}" for v in column] for column in percent_columns),
                   [f"{v:.2f}" for v in t.run_pct.tolist()],
                   [f"{v:.2f}" for v in t.ready_pct.tolist()],
                   ["" if code < 0 else DomainState(code).label for code in end.state.tolist()],
                   ["" if code < 0 else v for v, code in zip(end.since_ns.tolist(),
                                                              end.state.tolist(), strict=True)],
                   end.missed.tolist()]
        self._writer.writerows(zip(*columns, strict=True))
        self.out.flush()
