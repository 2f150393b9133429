"""Engine results as live records: what the tracefs and stream sources hand a monitor."""

from __future__ import annotations

from collections.abc import Callable

from runstate.engine.results import DomainResult
from runstate.live.snapshot import LiveDomain, LiveMember
from runstate.model.states import MEMBER_BUCKETS, MemberState


def live_domain(d: DomainResult, state_of: Callable[[str, str], str],
                with_members: bool, ns_per_tick: float = 1.0) -> LiveDomain:
    """One domain of an engine snapshot; ``state_of(domain, member)`` names a member's state.

    The engine counts ticks and a live record holds ns, so every figure is converted
    with ``ns_per_tick`` (a Xen stream counts TSC cycles; Linux ticks already are ns).
    """
    def ns(ticks: int) -> int:
        return ticks if ns_per_tick == 1.0 else int(ticks * ns_per_tick)

    member_ticks: dict[str, int] = dict.fromkeys(MEMBER_BUCKETS, 0)
    for m in d.members:
        for bucket, ticks in m.ticks.items():
            member_ticks[bucket] = member_ticks.get(bucket, 0) + ticks
    rows: tuple[LiveMember, ...] = ()
    if with_members:
        rows = tuple(LiveMember(key=m.key, name=m.name, state=state_of(d.key, m.key),
                                totals_ns={b: ns(t) for b, t in m.ticks.items()})
                     for m in d.members)
    return LiveDomain(key=d.key, name=d.name, members=d.members_seen,
                      current_state=d.current_state,
                      since_ns=None if d.entered_ticks is None else ns(d.entered_ticks),
                      totals_ns={s: ns(st.ticks) for s, st in d.states.items()},
                      missed=d.lost_intervals, member_rows=rows,
                      member_ns={b: ns(t) for b, t in member_ticks.items()},
                      changes=d.changes)


def member_label(code: int) -> str:
    """A member state code of the engine as a member bucket name."""
    if code <= MemberState.OFFLINE:
        return MemberState(code).label
    return "offline" if code == MemberState.ABSENT else "lost"
