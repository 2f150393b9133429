"""How a run maps onto a trace viewer's tracks, shared by the Perfetto and Chrome JSON writers.

Each domain is a process (pid = domain index + 1) whose first thread-like track
is the domain state; each member is a thread of it.  The host's idle domain
becomes a process "host: CPU idleness" whose threads are the CPUs, with
``idle`` / ``busy`` slices.  Times are ns on the trace's own clock
(:meth:`~runstate.report.model.Clock.at`).
"""

from __future__ import annotations

from dataclasses import dataclass

from runstate.engine.timeline import Lane
from runstate.model.registry import Registry
from runstate.model.states import MEMBER_BUCKETS, DomainState
from runstate.report.model import HOST_IDLE
from runstate.report.palette import DOMAIN_COLORS, MEMBER_COLORS

#: thread ids: domain d's state track is STATE_TID_BASE + d, member m MEMBER_TID_BASE + m
STATE_TID_BASE = 1
MEMBER_TID_BASE = 1_000_000
_HOST_NAMES = {"running": "idle", "blocked": "busy"}


@dataclass(frozen=True, slots=True)
class TrackNames:
    """Names and ids of every track of a run, from its registry."""

    registry: Registry

    def pid(self, domain: int) -> int:
        return domain + 1

    def tid(self, lane: Lane, owner: int) -> int:
        return (STATE_TID_BASE + owner) if lane == Lane.DOMAIN else MEMBER_TID_BASE + owner

    def is_host(self, domain: int) -> bool:
        return self.registry.domains[domain].tags.get("kind") == HOST_IDLE

    def process_name(self, domain: int) -> str:
        info = self.registry.domains[domain]
        if self.is_host(domain):
            return "host: CPU idleness"
        if info.name and info.name != info.key:
            return f"{info.name} [{info.key}]"
        return info.key

    def thread_name(self, lane: Lane, owner: int) -> str:
        if lane == Lane.DOMAIN:
            return "domain state"
        info = self.registry.members[owner]
        return info.name or info.key

    def domain_of(self, lane: Lane, owner: int) -> int:
        return owner if lane == Lane.DOMAIN else self.registry.members[owner].domain

    def slice_name(self, lane: Lane, owner: int, code: int) -> str:
        if lane == Lane.DOMAIN:
            return DomainState(code).label
        bucket = MEMBER_BUCKETS[code]
        if self.is_host(self.registry.members[owner].domain):
            return _HOST_NAMES.get(bucket, bucket)
        return bucket

    def color(self, lane: Lane, code: int) -> str:
        if lane == Lane.DOMAIN:
            return DOMAIN_COLORS[DomainState(code)]
        return MEMBER_COLORS[MEMBER_BUCKETS[code]]
