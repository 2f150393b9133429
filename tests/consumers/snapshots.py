"""A synthetic live source for exporter tests: counters that follow a scripted schedule.

Each domain cycles through a fixed pattern of (state, ns) stays; the totals at
any time are computed from the pattern alone, independently of the exporter.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from runstate.live.snapshot import LiveDomain, LiveMember, LiveSnapshot
from runstate.model.states import DomainState


@dataclass(frozen=True)
class Pattern:
    key: str
    name: str
    members: int
    #: (state, ns) stays repeated forever
    cycle: tuple[tuple[DomainState, int], ...]
    #: state changes the source says it missed
    missed: int = 0

    def totals(self, elapsed_ns: int) -> tuple[dict[DomainState, int], DomainState]:
        period = sum(ns for _, ns in self.cycle)
        whole, rest = divmod(elapsed_ns, period)
        totals = {s: 0 for s in DomainState}
        current = self.cycle[0][0]
        for state, ns in self.cycle:
            totals[state] += whole * ns + min(rest, ns)
            if rest > 0:
                current = state
            rest = max(rest - ns, 0)
        return totals, current


class ScriptedSource:
    """Hands out snapshots of the patterns at the wall-clock time of each call."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.started_ns = time.monotonic_ns()
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> LiveSnapshot:
        with self.lock:
            self.calls += 1
        now = time.monotonic_ns()
        return self.at(now)

    def at(self, now: int) -> LiveSnapshot:
        domains = []
        for p in self.patterns:
            totals, current = p.totals(now - self.started_ns)
            running = totals[DomainState.FULL_RUN]
            members = tuple(
                LiveMember(f"{p.key}.{i}", f"CPU {i}/KVM", "running",
                           {"running": running, "runnable": 0,
                            "blocked": sum(totals.values()) - running,
                            "offline": 0, "lost": 0})
                for i in range(p.members))
            domains.append(LiveDomain(p.key, p.name, p.members, current, self.started_ns,
                                      totals, p.missed, members))
        return LiveSnapshot(now, self.started_ns, "stream", 2, 7, tuple(domains))


BUSY = Pattern("vm:1", "web", 2, ((DomainState.FULL_RUN, 9_000_000),
                                  (DomainState.PARTIAL_RUN, 1_000_000)))
CROWDED = Pattern("vm:2", "db", 4, ((DomainState.CONCURRENCY_HAZARD, 6_000_000),
                                    (DomainState.BLOCKED, 4_000_000)), missed=3)
IDLE = Pattern("vm:3", "idle", 1, ((DomainState.BLOCKED, 10_000_000),))
