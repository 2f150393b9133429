"""Engine totals as live records: what the tracefs and stream sources hand a monitor."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runstate.engine.core import LiveTotals
from runstate.live.snapshot import DomainTable, LiveMember, TableDomains
from runstate.model.registry import Registry
from runstate.model.states import MEMBER_BUCKETS, MemberState


class EngineView:
    """The domains of an engine's :meth:`~runstate.engine.core.Engine.live_totals`
    that were ever watched, as the columns of a live snapshot.

    A domain keeps its index and key in the registry, so the keys are kept
    between snapshots and only the columns are new: a view of thousands of
    domains each second builds nothing per domain but their keys and names.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def domains(self, totals: LiveTotals, with_members: bool, ns_per_tick: float = 1.0
                ) -> TableDomains:
        """The watched domains in index order (times in ns: ticks times ``ns_per_tick``);
        a domain's member count is of the members that exist now, so a domain whose
        members all exited has none (and leaves the views once its time stops)."""
        infos = self.registry.domains
        shown = np.flatnonzero((totals.ticks.sum(axis=1) > 0) | (totals.state >= 0))

        def ns(ticks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
            return _in_ns(ticks[shown], ns_per_tick)

        rows = shown.tolist()
        table = DomainTable(
            [infos[d].key for d in rows], [infos[d].name for d in rows],
            totals.members_now[shown], totals.state[shown], ns(totals.entered_ticks),
            ns(totals.ticks), ns(totals.member_sum_ticks), totals.lost_intervals[shown],
            totals.changes[shown])
        members = self._member_rows(totals, rows, ns_per_tick) if with_members else None
        return TableDomains(table, members)

    def _member_rows(self, totals: LiveTotals, rows: list[int], ns_per_tick: float
                     ) -> list[tuple[LiveMember, ...]]:
        """Each shown domain's members, in index order."""
        assert totals.member_ticks is not None, "live_totals(with_members=True) gives them"
        each = _in_ns(totals.member_ticks, ns_per_tick).tolist()
        states = totals.member_states.tolist()
        by_domain: dict[int, list[LiveMember]] = {d: [] for d in rows}
        for m, info in enumerate(self.registry.members[: len(states)]):
            found = by_domain.get(info.domain)
            if found is not None:
                found.append(LiveMember(key=info.key, name=info.name,
                                        state=member_label(states[m]),
                                        totals_ns=dict(zip(MEMBER_BUCKETS, each[m], strict=True))))
        return [tuple(by_domain[d]) for d in rows]


def _in_ns(ticks: npt.NDArray[np.int64], ns_per_tick: float) -> npt.NDArray[np.int64]:
    return ticks if ns_per_tick == 1.0 else (ticks * ns_per_tick).astype(np.int64)


def member_label(code: int) -> str:
    """A member state code of the engine as a member bucket name."""
    if code <= MemberState.OFFLINE:
        return MemberState(code).label
    return "offline" if code == MemberState.ABSENT else "lost"
