"""`runstate top`'s FINDING column: the worst finding of the interval, at the documented bounds."""

from __future__ import annotations

from runstate.cli.top_rows import DomainRow, worst_finding
from runstate.model.states import DomainState


def _row(**percent: float) -> DomainRow:
    ns = {s: 0 for s in DomainState}
    for name, pct in percent.items():
        ns[DomainState[name.upper()]] = int(pct * 10_000_000)  # % of a 1 s interval
    ns[DomainState.BLOCKED] += 1_000_000_000 - sum(ns.values())
    return DomainRow("vm:1", "web", 4, ns, DomainState.BLOCKED, 0, 0, dict(ns), 0.0, 0.0, 0, 0)


def test_levels_follow_the_documented_bounds() -> None:
    # contention rules: low/medium/high/critical at 5/10/25/50 %; full_run at 25/50/80/90 %
    assert worst_finding(_row(concurrency_hazard=60)) == "fewer_vcpus:critical"
    assert worst_finding(_row(concurrency_hazard=30)) == "fewer_vcpus:high"
    assert worst_finding(_row(full_contention=4, partial_contention=4)) == \
        "host_overcommitted:low"
    assert worst_finding(_row(full_run=85)) == "more_vcpus:high"
    # full_run 30 % is low, concurrency_hazard 12 % medium: the worse one is shown
    assert worst_finding(_row(full_run=30, concurrency_hazard=12)) == "fewer_vcpus:medium"


def test_the_worst_of_several_is_shown() -> None:
    assert worst_finding(_row(full_run=26, concurrency_hazard=55)) == "fewer_vcpus:critical"


def test_idle_or_partly_running_domains_show_nothing() -> None:
    assert worst_finding(_row()) == ""
    assert worst_finding(_row(partial_run=70)) == ""
    assert worst_finding(_row(concurrency_hazard=4)) == ""
