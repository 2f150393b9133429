"""One read of the kernel's tables as columns: every group's figures at a moment.

A ``--group thread`` view of a 2000-thread process reads 2000 groups every
interval; the arithmetic (each open stay extended to the moment of the read,
member time per bucket, the member count of each group) is done on whole
columns here, never per group in Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runstate.live.bpf.loader import Counters
from runstate.live.snapshot import DomainTable
from runstate.model.states import MEMBER_BUCKETS, DomainState

_N_STATES = len(DomainState)
#: the kernel's member buckets, MEMBER_BUCKETS' first three, and its member counts in them
_KERNEL_BUCKETS = ("running", "runnable", "blocked")
assert MEMBER_BUCKETS[: len(_KERNEL_BUCKETS)] == _KERNEL_BUCKETS
_COUNT_FIELDS = ("n_running", "n_runnable", "n_blocked")


def group_table(c: Counters, now: int, members: npt.NDArray[np.int64]
                ) -> tuple[npt.NDArray[np.int64], DomainTable]:
    """The groups that ever had a counting member, in the kernel's order: their ids
    and their figures at ``now`` (keys and names are the caller's to give).

    The current stay and the members' current states are added up to that
    moment; ``members``: the member rows of each group.
    """
    g = c.groups
    gids = c.group_ids.astype(np.int64)
    state = g["state"].astype(np.int8)
    counting = state >= 0
    since = g["since"].astype(np.int64)
    totals = g["ns"].astype(np.int64)
    open_ = np.flatnonzero(counting)
    totals[open_, state[open_]] += np.maximum(0, now - since[open_])
    kernel = len(_KERNEL_BUCKETS)
    member_ns = np.zeros((len(gids), len(MEMBER_BUCKETS)), np.int64)
    member_ns[:, :kernel] = g["member_ns"]
    mlast = g["mlast"].astype(np.int64)
    elapsed = np.where(mlast != 0, np.maximum(0, now - mlast), 0)
    counts = np.stack([g[field] for field in _COUNT_FIELDS], axis=1)
    member_ns[:, :kernel] += elapsed[:, None] * np.maximum(0, counts)
    # a change stamped after the moment of the read (applied before the group was read)
    # counts as made at that moment, as its stay does
    since = np.where(counting, np.minimum(since, now), 0)
    table = DomainTable([], [], members, state, since, totals, member_ns,
                        g["missed"].astype(np.int64), g["changes"].astype(np.int64))
    shown = (members > 0) | counting | (g["first_ns"] != 0)
    if shown.all():
        return gids, table
    rows = np.flatnonzero(shown)
    return gids[rows], table.take(rows)


def members_per_group(c: Counters) -> npt.NDArray[np.int64]:
    """How many member rows name each group (in the order of the group rows)."""
    gids = c.group_ids.astype(np.int64)
    member_groups = c.members["group"].astype(np.int64)
    if not len(gids):
        return np.zeros(0, np.int64)
    order = np.argsort(gids, kind="stable")
    pos = np.searchsorted(gids, member_groups, sorter=order)
    pos = np.minimum(pos, len(gids) - 1)
    found = gids[order[pos]] == member_groups
    counts = np.bincount(order[pos[found]], minlength=len(gids))
    return counts.astype(np.int64)


class NeverLess:
    """Totals that never go down between snapshots.

    A handler reads the clock before it takes the group's lock; if this process
    read the group in between, the open stay it extended may end a few
    microseconds earlier than assumed.  The difference is kept out.
    """

    def __init__(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._totals = np.zeros((0, _N_STATES), np.int64)

    def apply(self, group_ids: npt.NDArray[np.int64], totals: npt.NDArray[np.int64],
              same: bool = False) -> npt.NDArray[np.int64]:
        """``totals`` of ``group_ids``, none less than the last time; ``same``: the
        groups are those of the last call, in its order."""
        if same and len(self._ids) == len(group_ids):
            totals = np.maximum(totals, self._totals)
        elif len(self._ids) and len(group_ids):
            order = np.argsort(self._ids, kind="stable")
            pos = np.minimum(np.searchsorted(self._ids, group_ids, sorter=order),
                             len(self._ids) - 1)
            pos = order[pos]
            known = self._ids[pos] == group_ids
            totals = totals.copy()
            totals[known] = np.maximum(totals[known], self._totals[pos[known]])
        self._ids, self._totals = group_ids, totals
        return totals
