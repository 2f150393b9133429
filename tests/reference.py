"""The slow, obviously correct reference model of the engine's accounting rules.

It replays a whole event list as a per-event state machine and writes down,
for every stretch of time between two distinct event times, each member's
state and the loss depth.  Every figure (domain state times, episodes,
intervals, member buckets) is then read off that list of segments with plain
Python loops, with no laziness, no histograms and no incremental tricks, so it
can be trusted as the judge of ``runstate.engine``.  Percentiles here are the
exact nearest-rank values.

The rules implemented are the engine's contract (docs/semantics.md, and the
numbered rules in the engine's documentation): loss depth and
epochs, first-row resolution per epoch (two-pass) or late reveal (one pass),
classification after all rows at one time, episodes, intervals, snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runstate.engine.results import (
    DomainResult,
    IntervalResult,
    MemberResult,
    RunResult,
    StateStats,
)
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MEMBER_BUCKETS, DomainState, MemberState

RUNNING, RUNNABLE, BLOCKED, OFFLINE = (
    MemberState.RUNNING, MemberState.RUNNABLE, MemberState.BLOCKED, MemberState.OFFLINE)
ABSENT, UNKNOWN, UNSEEN = MemberState.ABSENT, MemberState.UNKNOWN, MemberState.UNSEEN
COUNTING = frozenset({RUNNING, RUNNABLE, BLOCKED, OFFLINE, UNKNOWN})
KNOWN = frozenset({RUNNING, RUNNABLE, BLOCKED, OFFLINE, ABSENT})
LOST_BUCKET = "lost"


@dataclass(frozen=True, slots=True)
class Row:
    """One event row, as in an EventBatch (member -1: a loss marker)."""

    time: int
    member: int
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class Segment:
    """``[start, end)`` during which nothing changed."""

    start: int
    end: int
    depth: int
    states: tuple[MemberState, ...]


@dataclass(slots=True)
class _Replay:
    """Mutable state of the replay (one instance per run)."""

    states: list[MemberState]
    depth: int = 0
    epoch: int = 0
    epoch_start: int = 0
    member_extra: list[dict[str, int]] = field(default_factory=list)
    anomalies: dict[str, int] = field(default_factory=dict)


def first_pass(rows: Sequence[Row]) -> list[dict[int, MemberState]]:
    """Per epoch, the old state of each member's first row while no data is lost."""
    epochs: list[dict[int, MemberState]] = [{}]
    depth = 0
    for row in rows:
        if row.member < 0:
            if row.new == LOSS_BEGIN:
                depth += 1
            elif row.new == LOSS_END and depth > 0:
                depth -= 1
                if depth == 0:
                    epochs.append({})
        elif depth == 0 and row.member not in epochs[-1]:
            epochs[-1][row.member] = MemberState(row.old)
    return epochs


def classify(states: Sequence[MemberState], depth: int) -> DomainState | None:
    """The domain runstate table (docs/semantics.md) for one domain's members (None: no
    member counts)."""
    counting = [s for s in states if s in COUNTING]
    if not counting:
        return None
    if depth > 0 or UNKNOWN in counting:
        return DomainState.LOST
    running = RUNNING in counting
    runnable = RUNNABLE in counting
    blocked = BLOCKED in counting or OFFLINE in counting
    if running and runnable:
        return DomainState.CONCURRENCY_HAZARD
    if running:
        return DomainState.PARTIAL_RUN if blocked else DomainState.FULL_RUN
    if runnable:
        return DomainState.PARTIAL_CONTENTION if blocked else DomainState.FULL_CONTENTION
    return DomainState.BLOCKED


def member_bucket(state: MemberState, depth: int) -> str | None:
    """Which per-member bucket a stretch of time in ``state`` goes to."""
    if state not in COUNTING:
        return None
    if depth > 0 or state == UNKNOWN:
        return LOST_BUCKET
    return state.name.lower()


def nearest_rank(values: Sequence[int], percent: int) -> int:
    """Exact nearest-rank percentile (integer arithmetic)."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


def run_reference(
    registry: Registry,
    rows: Sequence[Row],
    *,
    start: int | None = None,
    end: int | None = None,
    interval: int | None = None,
    two_pass: bool = True,
    initial: Mapping[int, MemberState] | None = None,
    resolve_rows: Sequence[Row] | None = None,
) -> RunResult:
    """Replay ``rows`` and return what the engine must report.

    ``resolve_rows`` is what the first pass reads (default: ``rows`` itself,
    before the window end drops anything): a snapshot of a two-pass run uses
    the whole input's resolution while only a prefix has been fed.
    """
    if not rows and start is None:
        raise ValueError("no rows and no start")
    s = start if start is not None else rows[0].time
    kept = [r for r in rows if end is None or r.time <= end]
    last = max([s] + [r.time for r in kept])
    e = end if end is not None else last
    resolution = first_pass(resolve_rows if resolve_rows is not None else rows) \
        if two_pass else None
    replay = _start_replay(registry.n_members, s, resolution, initial or {})
    segments = _replay_rows(replay, kept, s, e, resolution)
    return _result(registry, segments, replay, s, e, interval, two_pass)


def _start_replay(
    n_members: int,
    s: int,
    resolution: list[dict[int, MemberState]] | None,
    initial: Mapping[int, MemberState],
) -> _Replay:
    states = []
    for m in range(n_members):
        if resolution is not None and m in resolution[0]:
            states.append(resolution[0][m])
        elif m in initial:
            states.append(MemberState(initial[m]))
        else:
            states.append(UNSEEN)
    replay = _Replay(states=states, epoch_start=s)
    replay.member_extra = [dict.fromkeys(MEMBER_BUCKETS, 0) for _ in range(n_members)]
    replay.anomalies = dict.fromkeys(
        ("old_state_mismatch", "no_change_events", "members_revealed_late",
         "unbalanced_loss_markers", "events_in_loss_windows"), 0)
    return replay


def _replay_rows(
    replay: _Replay,
    rows: Sequence[Row],
    s: int,
    e: int,
    resolution: list[dict[int, MemberState]] | None,
) -> list[Segment]:
    """Apply rows time by time; record the segments between distinct times."""
    segments: list[Segment] = []
    now = s
    i = 0
    while i < len(rows):
        t = max(rows[i].time, s)
        if t > now:
            segments.append(Segment(now, t, replay.depth, tuple(replay.states)))
            now = t
        while i < len(rows) and max(rows[i].time, s) == t:
            _apply(replay, rows[i], t, resolution)
            i += 1
    if e > now:
        segments.append(Segment(now, e, replay.depth, tuple(replay.states)))
    return segments


def _apply(
    replay: _Replay, row: Row, t: int, resolution: list[dict[int, MemberState]] | None
) -> None:
    if row.member < 0:
        _marker(replay, row.new, t, resolution)
        return
    m = row.member
    old, new = MemberState(row.old), MemberState(row.new)
    cur = replay.states[m]
    span = t - replay.epoch_start
    count = replay.anomalies
    if cur == UNSEEN:
        if replay.depth == 0 and old != ABSENT and span > 0:
            replay.member_extra[m][LOST_BUCKET if old == UNKNOWN else old.name.lower()] += span
            count["members_revealed_late"] += 1
    elif cur == UNKNOWN:
        # a row whose old state is UNKNOWN closes a span the data cannot decide: it stays lost
        if replay.depth == 0 and old not in (ABSENT, UNKNOWN) and span > 0:
            replay.member_extra[m][LOST_BUCKET] -= span
            replay.member_extra[m][old.name.lower()] += span
    elif replay.depth > 0:
        count["events_in_loss_windows"] += 1
    elif cur != old:
        count["old_state_mismatch"] += 1
    if new == cur and old != new:
        count["no_change_events"] += 1
    replay.states[m] = new


def _marker(
    replay: _Replay, code: int, t: int, resolution: list[dict[int, MemberState]] | None
) -> None:
    if code == LOSS_BEGIN:
        replay.depth += 1
        return
    if code != LOSS_END:
        return
    if replay.depth == 0:
        replay.anomalies["unbalanced_loss_markers"] += 1
        return
    replay.depth -= 1
    if replay.depth > 0:
        return
    replay.epoch += 1
    replay.epoch_start = t
    revealed = resolution[replay.epoch] if resolution is not None and \
        replay.epoch < len(resolution) else {}
    for m, state in enumerate(replay.states):
        if m in revealed:
            replay.states[m] = revealed[m]
        elif state in COUNTING:
            replay.states[m] = UNKNOWN


def _result(
    registry: Registry,
    segments: list[Segment],
    replay: _Replay,
    s: int,
    e: int,
    interval: int | None,
    two_pass: bool,
) -> RunResult:
    members_of: list[list[int]] = [[] for _ in registry.domains]
    for m, info in enumerate(registry.members):
        members_of[info.domain].append(m)
    domains = tuple(
        _domain(registry, d, members_of[d], segments, replay, e)
        for d in range(registry.n_domains)
    )
    intervals = _intervals(registry, members_of, segments, s, e, interval) \
        if interval is not None else ()
    return RunResult(start_ticks=s, end_ticks=e, domains=domains, intervals=intervals,
                     anomalies=dict(replay.anomalies), provisional=not two_pass)


def _timeline(members: list[int], segments: list[Segment]) -> list[tuple[int, int, DomainState]]:
    """The domain's alive stretches: (start, end, state)."""
    out = []
    for seg in segments:
        state = classify([seg.states[m] for m in members], seg.depth)
        if state is not None:
            out.append((seg.start, seg.end, state))
    return out


def _episodes(timeline: list[tuple[int, int, DomainState]]) -> list[tuple[int, int, DomainState]]:
    """Merge touching stretches of the same state into maximal episodes."""
    episodes: list[tuple[int, int, DomainState]] = []
    for a, b, state in timeline:
        if episodes and episodes[-1][1] == a and episodes[-1][2] == state:
            episodes[-1] = (episodes[-1][0], b, state)
        else:
            episodes.append((a, b, state))
    return episodes


def _domain(
    registry: Registry,
    d: int,
    members: list[int],
    segments: list[Segment],
    replay: _Replay,
    e: int,
) -> DomainResult:
    timeline = _timeline(members, segments)
    episodes = _episodes(timeline)
    stats = {}
    for state in DomainState:
        lengths = [b - a for a, b, st in episodes if st == state]
        stats[state] = StateStats(
            ticks=sum(b - a for a, b, st in timeline if st == state),
            count=len(lengths),
            p50_ticks=nearest_rank(lengths, 50),
            p95_ticks=nearest_rank(lengths, 95),
            p99_ticks=nearest_rank(lengths, 99),
            max_ticks=max(lengths, default=0),
        )
    current = episodes[-1] if episodes and episodes[-1][1] == e else None
    member_results = []
    seen = 0
    for m in members:
        ticks = dict(replay.member_extra[m])
        for seg in segments:
            bucket = member_bucket(seg.states[m], seg.depth)
            if bucket is not None:
                ticks[bucket] += seg.end - seg.start
        if sum(ticks.values()) > 0 or replay.states[m] in (RUNNING, RUNNABLE, BLOCKED, OFFLINE):
            seen += 1
        member = registry.members[m]
        member_results.append(MemberResult(key=member.key, name=member.name, ticks=ticks))
    info = registry.domains[d]
    return DomainResult(
        index=d,
        key=info.key,
        name=info.name,
        lifetime_ticks=sum(b - a for a, b, _ in timeline),
        states=stats,
        current_state=None if current is None else current[2],
        entered_ticks=None if current is None else current[0],
        changes=len(episodes),
        lost_intervals=sum(1 for ep in episodes if ep[2] == DomainState.LOST),
        members_seen=seen,
        members_expected=info.expected_members,
        members=tuple(member_results),
        tags=dict(info.tags),
    )


def _intervals(
    registry: Registry,
    members_of: list[list[int]],
    segments: list[Segment],
    s: int,
    e: int,
    interval: int,
) -> tuple[IntervalResult, ...]:
    timelines = [_timeline(members, segments) for members in members_of]
    out = []
    lo = s
    while lo < e:
        hi = min(lo + interval, e)
        domains = {}
        for d, timeline in enumerate(timelines):
            per_state = dict.fromkeys(DomainState, 0)
            for a, b, state in timeline:
                per_state[state] += max(0, min(b, hi) - max(a, lo))
            if sum(per_state.values()) > 0:
                domains[registry.domains[d].key] = per_state
        out.append(IntervalResult(lo, hi, domains))
        lo += interval
    return tuple(out)
