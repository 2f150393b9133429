"""Conservation checks against figures the domain state times are not built from.

A domain's lifetime is, by definition, the sum of its seven state times, so
comparing the two proves nothing.  What can fail is the lifetime against the
members' own time, accounted separately per member (running, runnable,
blocked, offline, lost buckets): a domain lives exactly while at least one
member counts, so its lifetime lies between its longest-present member's time
and the sum of all its members' times, and within the window.  Where a test
knows more (a member present throughout, so lifetime == window length), it
asserts that instead.
"""

from __future__ import annotations

from runstate.engine.results import DomainResult, RunResult


def member_time(domain: DomainResult) -> list[int]:
    """Each member's time in the domain, from its own buckets."""
    return [sum(member.ns.values()) for member in domain.members]


def assert_lifetime_from_members(domain: DomainResult, window_ns: int,
                                 provisional: bool = False) -> None:
    """Lifetime between the longest member's time and all members' time, within the window.

    A one-pass (provisional) run credits members with time from before they
    were seen, which the domain never had; there only the upper bounds hold."""
    times = member_time(domain)
    assert min(s.ns for s in domain.states.values()) >= 0, domain.key
    assert all(0 <= t <= window_ns for t in times), (domain.key, times, window_ns)
    assert domain.lifetime_ns <= min(window_ns, sum(times)), (domain.key, domain.lifetime_ns)
    if not provisional:
        assert domain.lifetime_ns >= max(times, default=0), (domain.key, domain.lifetime_ns)


def assert_lifetimes(result: RunResult) -> None:
    """:func:`assert_lifetime_from_members` for every domain of a run."""
    for domain in result.domains:
        assert_lifetime_from_members(domain, result.end_ns - result.start_ns,
                                     result.provisional)
