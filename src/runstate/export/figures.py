"""Live snapshots as advice figures: the totals since the start, or the change over a window.

A live domain's ``totals_ns`` include its current stay, so the difference of two
snapshots is exactly what the domain did between them; advice over "the last
minute" is the advice over that difference.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from runstate.analysis.advice import DomainFigures
from runstate.live.snapshot import LiveDomain, LiveSnapshot
from runstate.model.states import DomainState


def figures_from_snapshots(latest: LiveSnapshot, earlier: LiveSnapshot | None = None,
                           intervals: Sequence[LiveSnapshot] = ()) -> list[DomainFigures]:
    """Figures of each domain between ``earlier`` (or the monitor's start) and ``latest``.

    ``intervals``: snapshots taken in between, in time order; consecutive pairs
    (from ``earlier`` to ``latest``) become the intervals of the figures.
    """
    chain = ([earlier] if earlier is not None else []) + list(intervals) + [latest]
    figures = []
    for domain in latest.domains:
        states = _delta(domain, _find(earlier, domain.key))
        parts = [_delta(_find(b, domain.key), _find(a, domain.key))
                 for a, b in zip(chain, chain[1:], strict=False)] if intervals else []
        figures.append(DomainFigures(
            domain=domain.key,
            name=domain.name,
            members=max(domain.members, len(domain.member_rows)),
            states_ns=states,
            intervals=tuple(parts),
        ))
    return figures


def _find(snapshot: LiveSnapshot | None, key: str) -> LiveDomain | None:
    if snapshot is None:
        return None
    for domain in snapshot.domains:
        if domain.key == key:
            return domain
    return None


def _delta(now: LiveDomain | None, before: LiveDomain | None) -> dict[DomainState, int]:
    """ns per state from ``before`` to ``now`` (missing domains count as zero)."""
    out = {}
    for state in DomainState:
        late = now.totals_ns.get(state, 0) if now is not None else 0
        early = before.totals_ns.get(state, 0) if before is not None else 0
        out[state] = max(late - early, 0)
    return out


@dataclass
class SlidingWindow:
    """Keeps recent snapshots so that each new one can be compared with one ``window_ns`` old.

    Used by the exporter: a finding describes the last ``window_ns`` (one minute
    by default), not everything since the exporter started.
    """

    window_ns: int
    history: deque[LiveSnapshot]

    @classmethod
    def of(cls, window_ns: int) -> SlidingWindow:
        return cls(window_ns, deque())

    def push(self, snapshot: LiveSnapshot) -> LiveSnapshot | None:
        """Record ``snapshot``; return the latest earlier snapshot at least a window old.

        None while the monitor has run for less than a window (then the totals
        since its start are the window).
        """
        self.history.append(snapshot)
        base = None
        while self.history and snapshot.time_ns - self.history[0].time_ns >= self.window_ns:
            base = self.history.popleft()
        if base is not None:
            self.history.appendleft(base)  # stays the reference until a newer one qualifies
        return base
