"""``top --batch`` records from columns, against records built one domain at a time.

The batch writer fills thousands of domains per interval from columns; here its
JSON and CSV are compared with documents built field by field from the
snapshots' per-domain records (no root needed).
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from runstate.cli import top_batch
from runstate.cli.top_batch import CsvWriter, interval_json
from runstate.cli.top_rows import interval
from runstate.live.snapshot import DomainTable, LiveDomain, LiveMember, LiveSnapshot, TableDomains
from runstate.model.states import MEMBER_BUCKETS, DomainState

STATES = tuple(DomainState)


def _domains(step: int, gone: str | None = None) -> list[LiveDomain]:
    domains = []
    for i in range(40):
        key = f"thread:{i}"
        if key == gone:
            continue
        rng = np.random.default_rng(i)  # each domain's totals grow with the step
        totals = {s: int(v) for s, v in zip(STATES, rng.integers(0, 10**9, 7) * (step + 1),
                                             strict=True)}
        if i % 5 == 0:  # quiet: all its time blocked
            totals = {s: (step + 1) * 10**9 if s is DomainState.BLOCKED else 0 for s in STATES}
        if i == 13:  # its members exited before the interval: no time, not in the record
            totals = {s: 10**9 if s is DomainState.BLOCKED else 0 for s in STATES}
        current = None if i == 7 else STATES[i % 7]
        members = {b: int(v) for b, v in zip(MEMBER_BUCKETS, rng.integers(0, 10**9, 5)
                                             * (step + 1), strict=True)}
        domains.append(LiveDomain(
            key=key, name=f'python "{i}"\\', members=0 if i in (3, 13) else 1 + i % 3,
            current_state=current, since_ns=None if current is None else 10**9 * step + i,
            totals_ns=totals, missed=i % 2, member_ns=members, changes=i * step,
            member_rows=(LiveMember(str(i), f"t{i}", "running",
                                    {b: members[b] // 2 for b in MEMBER_BUCKETS}),)))
    return domains


def _snapshot(step: int, columns: bool, gone: str | None = None) -> LiveSnapshot:
    domains = _domains(step, gone)
    shown: TableDomains | tuple[LiveDomain, ...] = tuple(domains)
    if columns:
        shown = TableDomains(DomainTable.from_domains(domains),
                             [d.member_rows for d in domains])
    return LiveSnapshot(time_ns=(step + 1) * 10**9 + 5, started_ns=3, source="bpf", n_cpus=2,
                        lost_events=4, domains=shown, notes=("a note",))


def _expected(before: LiveSnapshot, after: LiveSnapshot) -> dict[str, object]:
    """The record, one domain and one field at a time, from the records."""
    old = {d.key: d for d in before.domains}
    domains = []
    for d in after.domains:
        b = old.get(d.key)
        ns = {s: d.totals_ns[s] - (b.totals_ns[s] if b else 0) for s in STATES}
        total = sum(ns.values())
        if total == 0 and d.members == 0:
            continue
        mns = {k: d.member_ns[k] - (b.member_ns[k] if b else 0) for k in MEMBER_BUCKETS}
        mtotal = sum(mns.values())
        olds = {m.key: m for m in b.member_rows} if b else {}
        domains.append({
            "domain": d.key, "name": d.name, "members_seen": d.members,
            "members_expected": None, "lifetime_ns": total,
            "current_state": d.current_state.label if d.current_state is not None else None,
            "since_ns": d.since_ns, "changes": d.changes, "lost_intervals": d.missed,
            "states": {s.label: {"ns": ns[s], "share": round(ns[s] / total, 6) if total else 0.0}
                       for s in STATES},
            "totals": {s.label: d.totals_ns[s] for s in STATES},
            "member_run_pct": round(100 * mns["running"] / mtotal, 3) if mtotal else 0.0,
            "member_ready_pct": round(100 * mns["runnable"] / mtotal, 3) if mtotal else 0.0,
            "members": [{"member": m.key, "name": m.name, "state": m.state,
                         "states": {k: {"ns": m.totals_ns[k] - (olds[m.key].totals_ns[k]
                                                                if m.key in olds else 0)}
                                    for k in MEMBER_BUCKETS}} for m in d.member_rows]})
    return {"window": {"start_ns": before.time_ns, "end_ns": after.time_ns,
                       "duration_ns": after.time_ns - before.time_ns},
            "host": {"cpus": 2, "busy_pct": 12.5, "lost_events": 4}, "domains": domains}


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "records"])
def test_json_record_matches_the_domains_one_by_one(columns: bool) -> None:
    before = _snapshot(1, columns, gone="thread:9")  # thread 9 is new in the interval
    after = _snapshot(2, columns, gone="thread:11")  # thread 11 exited
    record = json.loads(interval_json(interval(before, after), 12.5))
    expected = _expected(before, after)
    assert record["schema"] == "runstate.report/1"
    assert record["source"]["notes"] == ["a note"]
    for field in ("window", "host"):
        assert record[field] == expected[field]
    got = {d["domain"]: d for d in record["domains"]}
    want = {d["domain"]: d for d in expected["domains"]}  # type: ignore[attr-defined]
    assert got.keys() == want.keys()
    for key, domain in want.items():
        for field, value in domain.items():
            if field == "states":
                for s, figures in value.items():
                    assert got[key][field][s]["ns"] == figures["ns"], (key, s)
                    assert abs(got[key][field][s]["share"] - figures["share"]) <= 1e-6
            elif field.endswith("_pct"):
                assert abs(got[key][field] - value) <= 1e-3, (key, field)
            else:
                assert got[key][field] == value, (key, field)


def test_csv_rows_match_the_json_record() -> None:
    before, after = _snapshot(1, True), _snapshot(2, True)
    iv = interval(before, after)
    out = io.StringIO()
    CsvWriter(out).write(iv)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    record = json.loads(interval_json(iv, None))
    assert [r["domain"] for r in rows] == [d["domain"] for d in record["domains"]]
    for row, domain in zip(rows, record["domains"], strict=True):
        assert row["name"] == domain["name"]
        for s in STATES:
            assert int(row[f"{s.label}_ns"]) == domain["states"][s.label]["ns"]
            assert abs(float(row[f"{s.label}_pct"]) - 100 * domain["states"][s.label]["share"]) \
                <= 0.006
        assert row["current_state"] == (domain["current_state"] or "")
        assert row["since_ns"] == ("" if domain["since_ns"] is None else str(domain["since_ns"]))


def test_a_record_written_in_pieces_is_the_record_made_whole(monkeypatch) -> None:
    """Thousands of domains are written a piece at a time; the pieces make the same
    document as the whole record checked above."""
    iv = interval(_snapshot(1, True, gone="thread:9"), _snapshot(2, True, gone="thread:11"))
    whole = interval_json(iv, 12.5)
    monkeypatch.setattr(top_batch, "PIECE", 7)
    pieces = list(top_batch.json_pieces(iv, 12.5))
    assert len(pieces) == 2 + -(-len(iv.table) // 7)  # head, the domains by seven, tail
    assert "".join(pieces) == whole
    out = io.StringIO()
    top_batch.write_json(out, iv, 12.5)
    assert out.getvalue() == whole + "\n"
