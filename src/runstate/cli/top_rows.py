"""What ``runstate top`` shows for one interval: differences of two live snapshots.

A snapshot holds totals since the monitor started; an interval's figures are
the differences of consecutive snapshots, so nothing is lost between refreshes
however long one takes.  Shares are of the domain's own time in the interval
(a VM that started or stopped inside it still adds up to 100 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runstate.analysis.advice import DomainFigures, advise_domain
from runstate.live.snapshot import LiveDomain, LiveMember, LiveSnapshot
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
class Interval:
    start_ns: int
    end_ns: int
    source: str
    n_cpus: int
    lost_events: int
    domains: tuple[DomainRow, ...]
    notes: tuple[str, ...] = ()

    @property
    def length_ns(self) -> int:
        return self.end_ns - self.start_ns


def interval(before: LiveSnapshot | None, after: LiveSnapshot) -> Interval:
    """The interval from ``before`` (None: the monitor's start) to ``after``."""
    previous = {d.key: d for d in before.domains} if before is not None else {}
    rows = tuple(_row(previous.get(d.key), d, after.time_ns) for d in after.domains)
    start = before.time_ns if before is not None else after.started_ns
    return Interval(start, after.time_ns, after.source, after.n_cpus, after.lost_events,
                    tuple(r for r in rows if r.time_ns > 0 or r.members > 0), after.notes)


def _row(before: LiveDomain | None, after: LiveDomain, now: int) -> DomainRow:
    ns = {s: after.totals_ns.get(s, 0) - (before.totals_ns.get(s, 0) if before else 0)
          for s in STATES}
    member_ns = _delta(before.member_ns if before else {}, after.member_ns)
    member_total = sum(member_ns.values())
    run = 100.0 * member_ns.get("running", 0) / member_total if member_total else 0.0
    ready = 100.0 * member_ns.get("runnable", 0) / member_total if member_total else 0.0
    old_members = {m.key: m for m in before.member_rows} if before else {}
    members = tuple(_member(old_members.get(m.key), m) for m in after.member_rows)
    current_for = None if after.since_ns is None else max(0, now - after.since_ns)
    return DomainRow(after.key, after.name, after.members, ns, after.current_state,
                     current_for, after.since_ns, dict(after.totals_ns), run, ready,
                     after.missed, after.changes, members)


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
