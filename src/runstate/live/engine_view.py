"""Engine results as live records: what the tracefs and stream sources hand a monitor."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from runstate.engine.results import DomainResult, RunResult
from runstate.live.snapshot import LiveDomain, LiveMember
from runstate.model.registry import Registry
from runstate.model.states import MEMBER_BUCKETS, MemberState

#: member states of members that exist (not gone, not waiting for their first record)
_EXISTING = np.array([s not in (MemberState.ABSENT, MemberState.UNSEEN)
                      for s in range(max(MemberState) + 1)])


def live_domains(result: RunResult, states: npt.NDArray[np.int8], registry: Registry,
                 with_members: bool) -> tuple[LiveDomain, ...]:
    """The domains of an engine snapshot that were ever watched.

    ``states`` are the members' states now (:meth:`Engine.member_states`): a
    domain's member count is of the members that exist now, so a domain whose
    members all exited has none (and leaves the views once its time stops).
    """
    existing = _EXISTING[states] if len(states) else np.zeros(0, bool)
    owner = registry.member_domains()[: len(states)]
    counts = np.bincount(owner[existing], minlength=registry.n_domains).tolist()

    def state_of(domain_key: str, member_key: str) -> str:
        index = registry.find_member(domain_key, member_key)
        return "lost" if index is None or index >= len(states) else \
            member_label(int(states[index]))

    return tuple(live_domain(d, state_of, with_members, counts[d.index])
                 for d in result.domains if d.lifetime_ticks > 0 or d.current_state is not None)


def live_domain(d: DomainResult, state_of: Callable[[str, str], str], with_members: bool,
                members_now: int) -> LiveDomain:
    """One domain of an engine snapshot; ``state_of(domain, member)`` names a member's state."""
    member_ns: dict[str, int] = dict.fromkeys(MEMBER_BUCKETS, 0)
    for m in d.members:
        for bucket, ticks in m.ticks.items():
            member_ns[bucket] = member_ns.get(bucket, 0) + ticks
    rows: tuple[LiveMember, ...] = ()
    if with_members:
        rows = tuple(LiveMember(key=m.key, name=m.name, state=state_of(d.key, m.key),
                                totals_ns=dict(m.ticks)) for m in d.members)
    return LiveDomain(key=d.key, name=d.name, members=members_now,
                      current_state=d.current_state, since_ns=d.entered_ticks,
                      totals_ns={s: st.ticks for s, st in d.states.items()},
                      missed=d.lost_intervals, member_rows=rows, member_ns=member_ns,
                      changes=d.changes)


def member_label(code: int) -> str:
    """A member state code of the engine as a member bucket name."""
    if code <= MemberState.OFFLINE:
        return MemberState(code).label
    return "offline" if code == MemberState.ABSENT else "lost"
