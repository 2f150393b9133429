"""Typed results of an engine run: what reports, exporters and the live view read.

Every time here is in ticks, the unit of the batches' ``time`` (ns, or TSC cycles
for Xen); :func:`runstate.report.model.build_report` converts them to ns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runstate.model.states import DomainState


@dataclass(frozen=True, slots=True)
class StateStats:
    """Time in one domain state and its episodes (maximal stays in that state)."""

    ticks: int
    count: int
    p50_ticks: int
    p95_ticks: int
    p99_ticks: int
    max_ticks: int


@dataclass(frozen=True, slots=True)
class MemberResult:
    """One member's ticks per bucket over the run."""

    key: str
    name: str
    #: ticks per bucket: running, runnable, blocked, offline, lost
    ticks: dict[str, int]


@dataclass(frozen=True, slots=True)
class DomainResult:
    """One domain's accounting: ticks and episodes per state, current state, members."""

    index: int
    key: str
    name: str
    lifetime_ticks: int
    states: dict[DomainState, StateStats]
    #: the state at the snapshot time (None: no counting member then)
    current_state: DomainState | None
    #: when the current state was entered
    entered_ticks: int | None
    #: number of state changes (episodes started)
    changes: int
    #: number of lost/unknown episodes (the hypervisor interface's ``missed_changes``)
    lost_intervals: int
    members_seen: int
    members_expected: int | None
    members: tuple[MemberResult, ...]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IntervalResult:
    """Time per state of every domain within ``[start_ticks, end_ticks)``."""

    start_ticks: int
    end_ticks: int
    #: domain key -> ticks per state; only domains alive in the interval
    domains: dict[str, dict[DomainState, int]]


@dataclass(frozen=True, slots=True)
class RunResult:
    """A whole analysis (or a snapshot of a running one)."""

    start_ticks: int
    end_ticks: int
    domains: tuple[DomainResult, ...]
    intervals: tuple[IntervalResult, ...]
    anomalies: dict[str, int]
    #: True for one-pass (streaming) runs, where members first seen late only
    #: count from their first record
    provisional: bool = False
