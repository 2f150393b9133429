"""Engine results as live records: what the tracefs and stream sources hand a monitor."""

from __future__ import annotations

from collections.abc import Callable

from runstate.engine.results import DomainResult
from runstate.live.snapshot import LiveDomain, LiveMember
from runstate.model.states import MEMBER_BUCKETS, MemberState


def live_domain(d: DomainResult, state_of: Callable[[str, str], str],
                with_members: bool) -> LiveDomain:
    """One domain of an engine snapshot; ``state_of(domain, member)`` names a member's state."""
    member_ns: dict[str, int] = dict.fromkeys(MEMBER_BUCKETS, 0)
    for m in d.members:
        for bucket, ns in m.ns.items():
            member_ns[bucket] = member_ns.get(bucket, 0) + ns
    rows: tuple[LiveMember, ...] = ()
    if with_members:
        rows = tuple(LiveMember(key=m.key, name=m.name, state=state_of(d.key, m.key),
                                totals_ns=dict(m.ns)) for m in d.members)
    return LiveDomain(key=d.key, name=d.name, members=d.members_seen,
                      current_state=d.current_state, since_ns=d.entered_ns,
                      totals_ns={s: st.ns for s, st in d.states.items()},
                      missed=d.lost_intervals, member_rows=rows, member_ns=member_ns,
                      changes=d.changes)


def member_label(code: int) -> str:
    """A member state code of the engine as a member bucket name."""
    if code <= MemberState.OFFLINE:
        return MemberState(code).label
    return "offline" if code == MemberState.ABSENT else "lost"
