"""What ``runstate top`` shows for one interval: differences of two live snapshots.

A snapshot holds totals since the monitor started; an interval's figures are
the differences of consecutive snapshots, so nothing is lost between refreshes
however long one takes.  Shares are of the domain's own time in the interval
(a VM that started or stopped inside it still adds up to 100 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from runstate.analysis.advice import DomainFigures, advise_domain
from runstate.live.snapshot import DomainTable, LiveMember, LiveSnapshot
from runstate.model.states import MEMBER_BUCKETS, DomainState

STATES = tuple(DomainState)


@dataclass(frozen=True, slots=True)
class MemberRow:
    key: str
    name: str
    state: str
    #: ns per member bucket in the interval
    ns: dict[str, int]

    def percent(self, bucket: str) -> float:
        total = sum(self.ns.values())
        return 100.0 * self.ns.get(bucket, 0) / total if total else 0.0


@dataclass(frozen=True, slots=True)
class DomainRow:
    """One domain over one interval."""

    key: str
    name: str
    members: int
    #: ns per state in the interval
    ns: dict[DomainState, int]
    current_state: DomainState | None
    #: how long the current state has lasted at the interval end
    current_for_ns: int | None
    since_ns: int | None
    #: ns per state since the monitor started, the current stay included
    totals_ns: dict[DomainState, int]
    #: mean share of a member's time running / waiting for a CPU, in %
    run_pct: float
    ready_pct: float
    missed: int
    changes: int
    member_rows: tuple[MemberRow, ...] = field(default_factory=tuple)

    @property
    def time_ns(self) -> int:
        return sum(self.ns.values())

    def share(self, state: DomainState) -> float:
        total = self.time_ns
        return 100.0 * self.ns[state] / total if total else 0.0


@dataclass(frozen=True, slots=True)
class RowTable:
    """Every domain of an interval as columns, in the snapshot's order.

    ``top --batch`` writes thousands of domains per interval from these columns;
    :class:`DomainRow` records are made only for the views that want them.
    """

    #: the domains at the interval's end: names, members, current state, totals, ...
    end: DomainTable
    #: ns per state in the interval, in DomainState order
    ns: npt.NDArray[np.int64]
    #: how long the current state has lasted at the interval's end
    current_for_ns: npt.NDArray[np.int64]
    run_pct: npt.NDArray[np.float64]
    ready_pct: npt.NDArray[np.float64]
    #: each domain's member rows (None: the snapshot had none)
    member_rows: list[tuple[MemberRow, ...]] | None = None

    def __len__(self) -> int:
        return len(self.end)

    def row(self, i: int) -> DomainRow:
        end = self.end
        code = int(end.state[i])
        current = None if code < 0 else DomainState(code)
        return DomainRow(
            end.keys[i], end.names[i], int(end.members[i]),
            dict(zip(STATES, self.ns[i].tolist(), strict=True)), current,
            None if current is None else int(self.current_for_ns[i]),
            None if current is None else int(end.since_ns[i]),
            dict(zip(STATES, end.totals_ns[i].tolist(), strict=True)),
            float(self.run_pct[i]), float(self.ready_pct[i]), int(end.missed[i]),
            int(end.changes[i]), self.member_rows[i] if self.member_rows is not None else ())


@dataclass(slots=True)
class Interval:
    start_ns: int
    end_ns: int
    source: str
    n_cpus: int
    lost_events: int
    table: RowTable
    notes: tuple[str, ...] = ()
    _rows: tuple[DomainRow, ...] | None = None

    @property
    def length_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def domains(self) -> tuple[DomainRow, ...]:
        """The domains as records (made on first use)."""
        if self._rows is None:
            self._rows = tuple(self.table.row(i) for i in range(len(self.table)))
        return self._rows


def interval(before: LiveSnapshot | None, after: LiveSnapshot) -> Interval:
    """The interval from ``before`` (None: the monitor's start) to ``after``.

    A domain is kept if it had time in the interval or has members now.
    """
    now = after.table
    totals, member_ns = _aligned(before.table if before is not None else None, now.keys)
    ns = now.totals_ns - totals
    members_delta = now.member_ns - member_ns
    member_total = members_delta.sum(axis=1)
    run, ready = (_percent(members_delta[:, MEMBER_BUCKETS.index(b)], member_total)
                  for b in ("running", "runnable"))
    current_for = np.maximum(0, after.time_ns - now.since_ns)
    kept = (ns.sum(axis=1) > 0) | (now.members > 0)
    keep = np.flatnonzero(kept)
    if len(keep) == len(kept):  # every domain (the usual case): no copy of the columns
        table = RowTable(now, ns, current_for, run, ready, _member_rows(before, after, keep))
    else:
        table = RowTable(now.take(keep), ns[keep], current_for[keep], run[keep], ready[keep],
                         _member_rows(before, after, keep))
    start = before.time_ns if before is not None else after.started_ns
    return Interval(start, after.time_ns, after.source, after.n_cpus, after.lost_events,
                    table, after.notes)


def _aligned(before: DomainTable | None, keys: list[str]
             ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The earlier totals and member ns of the domains ``keys`` (0 for new ones)."""
    n = len(keys)
    if before is None:
        return (np.zeros((n, len(STATES)), np.int64),
                np.zeros((n, len(MEMBER_BUCKETS)), np.int64))
    if before.keys == keys:
        return before.totals_ns, before.member_ns
    index = {k: i for i, k in enumerate(before.keys)}
    pos = np.array([index.get(k, -1) for k in keys], np.intp)
    found = pos >= 0
    totals = np.zeros((n, len(STATES)), np.int64)
    member_ns = np.zeros((n, len(MEMBER_BUCKETS)), np.int64)
    totals[found] = before.totals_ns[pos[found]]
    member_ns[found] = before.member_ns[pos[found]]
    return totals, member_ns


def _percent(part: npt.NDArray[np.int64], total: npt.NDArray[np.int64]
             ) -> npt.NDArray[np.float64]:
    out = np.zeros(len(total), np.float64)
    np.divide(100.0 * part, total, out=out, where=total > 0)
    return out


def _member_rows(before: LiveSnapshot | None, after: LiveSnapshot,
                 keep: npt.NDArray[np.intp]) -> list[tuple[MemberRow, ...]] | None:
    """Member rows of the kept domains, where the snapshot has them."""
    if not after.has_member_rows:
        return None
    previous = {d.key: d for d in before.domains} if before is not None else {}
    rows = []
    for i in keep.tolist():
        d = after.domains[i]
        old = previous.get(d.key)
        old_members = {m.key: m for m in old.member_rows} if old is not None else {}
        rows.append(tuple(_member(old_members.get(m.key), m) for m in d.member_rows))
    return rows


def _member(before: LiveMember | None, after: LiveMember) -> MemberRow:
    return MemberRow(after.key, after.name, after.state,
                     _delta(before.totals_ns if before else {}, after.totals_ns))


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {b: after.get(b, 0) - before.get(b, 0) for b in MEMBER_BUCKETS if b in after}


class HostCpu:
    """Busy share of all CPUs between two reads of /proc/stat."""

    def __init__(self) -> None:
        self._last = _read_cpu_times()

    def busy_percent(self) -> float | None:
        now = _read_cpu_times()
        last, self._last = self._last, now
        if now is None or last is None:
            return None
        total = sum(now) - sum(last)
        idle = (now[3] + now[4]) - (last[3] + last[4])
        return 100.0 * (total - idle) / total if total > 0 else None


def _read_cpu_times() -> list[int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    return [int(v) for v in first[1:9]]


def worst_finding(row: DomainRow) -> str:
    """The domain's worst finding over the interval as ``rule:level`` ("" for none).

    The same rules and default thresholds as ``runstate advise``, applied to the
    interval's shares (live counters carry no episode lengths, so the hazard rule
    is judged on its share alone).
    """
    advice = advise_domain(DomainFigures(row.key, row.name, row.members, row.ns))
    if not advice.findings:
        return ""
    worst = advice.findings[0]
    return f"{worst.rule.value}:{worst.level.label}"
