"""Reads of the kernel's tables at a moment, each doing only what changed asks for.

A view refreshed every second spends most of its time on what it reads and
allocates, and a process that sleeps a second between reads finds all of it
out of the caches.  So a read takes:

* the groups one lookup each while they are few and all their ids are known
  (the program counts the groups it makes for forked tasks; while that count
  stays the same, no group is missing), else in one walk of the table, which
  visits every one of its 16384 buckets;
* the member table only when the groups say it changed (a member came or left,
  a group has none) or member records are wanted: a view of 2000 quiet threads
  reads the groups alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runstate.live.bpf.loader import T_DROPPED, T_NEW_GROUPS, BpfAccounting, Counters

#: a read of the groups that takes longer than this (descheduled) is repeated
MAX_READ_NS = 2_000_000
READ_ATTEMPTS = 4
#: up to this many groups are read one lookup each; more in one walk of the table
BY_ID_MAX_GROUPS = 32

Table = tuple[npt.NDArray[np.uint32], npt.NDArray[np.void]]


@dataclass(frozen=True, slots=True)
class Read:
    """One read: the tables, the moment the groups were read, and whether the member
    table was read now (else it is the last read's, unchanged since)."""

    counters: Counters
    time_ns: int
    fresh_members: bool


class TableReads:
    """Reads of a loaded program's tables, following the groups it has."""

    def __init__(self, acc: BpfAccounting) -> None:
        self._acc = acc
        #: every group id there is, when they are few (those of the last walk of the
        #: table and those added since; None: walk it next time), and the program's
        #: count of the groups it made for new tasks at that walk (none before the
        #: first member is in)
        self._known: list[int] | None = []
        self._made_at_walk = 0
        #: the last read of the member table, with the group ids and member counts then
        #: (as bytes: comparing them is one call, where numpy's comparison is many)
        self._last_members: tuple[bytes, bytes, Table] | None = None

    def added(self, group_ids: list[int]) -> None:
        """Groups this process created."""
        if self._known is not None:
            self._known.extend(group_ids)

    def removed(self, group_id: int) -> None:
        """A group this process removed."""
        if self._known is not None and group_id in self._known:
            self._known.remove(group_id)

    def read(self, with_members: bool) -> Read:
        """The tables now; the groups' arrays are views of a buffer the next read
        overwrites.

        The groups are read again (a few times at most) when this process was
        descheduled during the read, so the moment is a precise one.
        """
        tallies = self._acc.tallies()
        known = self._by_id(tallies[T_NEW_GROUPS])
        if known is not None:
            # a first read brings the code and the groups back into the caches: after a
            # second asleep the timed read would otherwise take a millisecond
            self._acc.read_groups_by_id(known)
        for _ in range(READ_ATTEMPTS):
            begin = time.monotonic_ns()
            self._acc.show_until(begin)
            groups = self._groups(known, tallies[T_NEW_GROUPS])
            if time.monotonic_ns() - begin <= MAX_READ_NS:
                break
        # stays are extended to the time before the read: a change the read already
        # holds was stamped later, so no total can exceed what a later read will show
        members, fresh = self._members(groups, with_members)
        return Read(Counters(*groups, *members, tallies[T_DROPPED]), begin, fresh)

    def _by_id(self, made: int) -> list[int] | None:
        """Every group id, when they are few and all known: the program made no group
        for a new task since the last walk of the table (``made``: its count now)."""
        known = self._known
        if known is not None and made == self._made_at_walk and len(known) <= BY_ID_MAX_GROUPS:
            return known
        return None

    def _groups(self, known: list[int] | None, made: int) -> Table:
        """Every group under its lock: the ``known`` ones one by one, else in a walk of
        the table (its ids are known from then on, if they are few)."""
        if known is not None:
            return self._acc.read_groups_by_id(known)
        ids, values = self._acc.read_groups(copy=False)
        self._known = ids.tolist() if len(ids) <= BY_ID_MAX_GROUPS else None
        self._made_at_walk = made
        return ids, values

    def _members(self, groups: Table, with_members: bool) -> tuple[Table, bool]:
        """The member table, and whether it was read now."""
        gids, values = groups
        counts = values["members"]
        ids, counted = gids.tobytes(), counts.tobytes()
        last = self._last_members
        if (last is not None and not with_members and last[0] == ids and last[1] == counted
                and bool(counts.all())):
            return last[2], False
        members = self._acc.read_member_table()
        self._last_members = (ids, counted, members)
        return members, True
