"""Which threads the tracefs live source follows, and what /proc says of them now.

With a pid filter the instance follows what the selection named at the start
and, through ``event-fork``, what those tasks fork; a thread met later (in an
event, or by a refresh) is taken in when the selection names it (a ``--vm``
that started after the monitor), and the filter is widened to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from runstate.live import procinfo
from runstate.live.tasks import TaskCatalog
from runstate.model.registry import Registry
from runstate.sources.linux.grouping import Assignment

#: /proc states that mean "not running and not waiting for a CPU"
SLEEPING = frozenset("SDTtIP")


class FollowedGrouping:
    """The catalog's grouping, restricted (with a pid filter) to followed tasks, their
    forks and the threads of VMs the selection names that started later."""

    def __init__(self, catalog: TaskCatalog, keep: set[int] | None,
                 comms: dict[int, str]) -> None:
        self.catalog = catalog
        self.keep = keep
        self.mode = catalog.grouping.mode
        self._comms = comms
        #: threads taken in since the pid filter was last widened
        self.adopted: list[int] = []
        #: the thread of each (domain key, member key) assigned
        self.tids: dict[tuple[str, str], int] = {}

    @property
    def expected_members(self) -> dict[str, int]:
        return {}

    def assign(self, tid: int) -> Assignment | None:
        if tid <= 0:
            return None
        outside = self.keep is not None and tid not in self.keep
        if outside and not self.catalog.selects(tid):
            return None
        where = self.catalog.describe(tid, self._comms.get(tid))
        if where is not None:
            self.tids[(where.domain_key, where.member_key)] = tid
            if outside:
                self.adopt([tid])
        return where

    def adopt(self, tids: list[int]) -> None:
        assert self.keep is not None
        new = [t for t in tids if t not in self.keep]
        self.keep.update(new)
        self.adopted.extend(new)

    def threads_of(self, registry: Registry, members: Iterable[int]) -> dict[int, int]:
        """The thread of each member (those the grouping assigned): member -> tid."""
        found = {}
        for member in members:
            info = registry.members[member]
            tid = self.tids.get((registry.domains[info.domain].key, info.key))
            if tid is not None:
                found[member] = tid
        return found


def asleep(threads: dict[int, int]) -> dict[int, int]:
    """Those of ``threads`` (key -> tid) that /proc shows asleep: key -> the moment
    just before /proc was read (it was asleep then or fell asleep right after)."""
    seen = {}
    for key, tid in threads.items():
        moment = time.monotonic_ns()
        if procinfo.thread_state(tid) in SLEEPING:
            seen[key] = moment
    return seen
