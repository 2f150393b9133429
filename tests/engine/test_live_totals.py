"""``Engine.live_totals`` (the columns live views read) against the reference model.

Random streams are fed a piece at a time; at each moment every column must
equal what the reference replay of the rows up to that moment says: time per
state, current state and its start, changes, lost episodes, member time (per
member and summed per domain) and how many members exist.
"""

from __future__ import annotations

import bisect

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstate.engine import Engine, Resolver
from runstate.engine.core import LiveTotals
from runstate.engine.results import RunResult
from runstate.model.states import MEMBER_BUCKETS, DomainState, MemberState
from tests.engine.streams import Stream, batch_of, streams
from tests.reference import Row, _replay_rows, _start_replay, first_pass, run_reference

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
SMALLER = settings(max_examples=300, deadline=None, suppress_health_check=_QUIET)
_GONE = (MemberState.ABSENT, MemberState.UNSEEN)


def _members_now(stream: Stream, rows: list[Row], t: int, two_pass: bool) -> list[int]:
    """Per domain, the members the reference replay has neither gone nor unseen at ``t``."""
    resolution = first_pass(stream.rows) if two_pass else None
    replay = _start_replay(stream.registry.n_members, stream.window_start, resolution,
                           stream.initial)
    _replay_rows(replay, [r for r in rows if r.time <= t], stream.window_start, t, resolution)
    counts = [0] * stream.registry.n_domains
    for m, state in enumerate(replay.states):
        if state not in _GONE:
            counts[stream.registry.members[m].domain] += 1
    return counts


def _assert_columns(got: LiveTotals, want: RunResult, stream: Stream,
                    members_now: list[int]) -> None:
    assert (got.start_ticks, got.end_ticks) == (want.start_ticks, want.end_ticks)
    assert got.member_ticks is not None
    for d, domain in enumerate(want.domains):
        assert got.ticks[d].tolist() == [domain.states[s].ticks for s in DomainState], d
        current = -1 if domain.current_state is None else int(domain.current_state)
        assert int(got.state[d]) == current, d
        if domain.current_state is not None:
            assert int(got.entered_ticks[d]) == domain.entered_ticks, d
        assert int(got.changes[d]) == domain.changes, d
        assert int(got.lost_intervals[d]) == domain.lost_intervals, d
        sums = [sum(m.ticks[b] for m in domain.members) for b in MEMBER_BUCKETS]
        assert got.member_sum_ticks[d].tolist() == sums, d
        assert int(got.members_now[d]) == members_now[d], d
        indices = [m for m, info in enumerate(stream.registry.members) if info.domain == d]
        for m, member in zip(indices, domain.members, strict=True):
            assert got.member_ticks[m].tolist() == [member.ticks[b] for b in MEMBER_BUCKETS]


def _engine(stream: Stream, one_pass: bool) -> Engine:
    """An engine over the stream's window, with the whole stream's first pass unless
    ``one_pass``."""
    resolver = None if one_pass else Resolver()
    if resolver is not None:
        resolver.feed(batch_of(stream.rows))
    return Engine(stream.registry, start_ticks=stream.window_start,
                  resolution=None if resolver is None else
                  resolver.result(stream.registry.n_members),
                  initial=stream.initial)


@SMALLER
@given(streams(), st.lists(st.integers(0, 6000), min_size=1, max_size=5), st.booleans())
def test_live_totals_match_the_reference_at_every_moment(stream: Stream, offsets: list[int],
                                                         one_pass: bool) -> None:
    rows, start = stream.rows, stream.window_start
    times = [r.time for r in rows]
    engine = _engine(stream, one_pass)
    fed = 0
    for t in sorted({start + o for o in offsets if start + o <= max(start, times[-1])}):
        upto = bisect.bisect_right(times, t)  # every row up to t, fed in pieces
        if upto > fed:
            engine.feed(batch_of(rows[fed:upto]))
            fed = upto
        got = engine.live_totals(t, with_members=True)
        want = run_reference(stream.registry, rows, start=start, end=t,
                             two_pass=not one_pass, initial=stream.initial, resolve_rows=rows)
        _assert_columns(got, want, stream, _members_now(stream, rows, t, not one_pass))
