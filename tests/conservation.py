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
    return [sum(member.ticks.values()) for member in domain.members]


def assert_lifetime_from_members(domain: DomainResult, window_ticks: int,
                                 provisional: bool = False) -> None:
    """Lifetime between the longest member's time and all members' time, within the window.

    A one-pass (provisional) run credits members with time from before they
    were seen, which the domain never had; there only the upper bounds hold."""
    times = member_time(domain)
    assert min(s.ticks for s in domain.states.values()) >= 0, domain.key
    assert all(0 <= t <= window_ticks for t in times), (domain.key, times, window_ticks)
    lifetime = domain.lifetime_ticks
    assert lifetime <= min(window_ticks, sum(times)), (domain.key, lifetime)
    if not provisional:
        assert lifetime >= max(times, default=0), (domain.key, lifetime)


def assert_lifetimes(result: RunResult) -> None:
    """:func:`assert_lifetime_from_members` for every domain of a run."""
    for domain in result.domains:
        assert_lifetime_from_members(domain, result.end_ticks - result.start_ticks,
                                     result.provisional)
