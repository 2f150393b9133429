"""A slow, independent model of exact-mode domain runstates for a synthetic scenario.

It works from the scenario (what the generator wrote and dropped), not from
the file, and follows the exact-mode rules of docs/semantics.md directly, time
slice by time slice, with its own copy of the domain state table:

* window: first..last record in the file (lost records' first_tsc included);
* inside a lost window (union of [first_tsc, lost record TSC)) every domain
  with a vCPU seen so far is ``lost``;
* elsewhere a vCPU's state is the new state of its last record in the
  current epoch (epoch = window start or end of a lost window), else the old
  state of its next record in the epoch; with neither it is unknown (domain
  lost) if it was seen before, and does not count if it never was.
"""

from __future__ import annotations

import bisect

from runstate.model.states import DomainState
from runstate.sources.xentrace.synth import Scenario

IDLE = 32767

#: (some vCPU running, some runnable, some blocked or offline) -> domain state,
#: written out case by case from the definitions of the six states
DOMAIN_STATE = {
    (True, False, False): DomainState.FULL_RUN,
    (False, True, False): DomainState.FULL_CONTENTION,
    (True, True, False): DomainState.CONCURRENCY_HAZARD,
    (True, True, True): DomainState.CONCURRENCY_HAZARD,
    (False, False, True): DomainState.BLOCKED,
    (True, False, True): DomainState.PARTIAL_RUN,
    (False, True, True): DomainState.PARTIAL_CONTENTION,
}


def _loss_windows(sc: Scenario) -> list[tuple[int, int]]:
    spans = sorted((x.first_tsc, x.tsc) for x in sc.losses)
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def expected(sc: Scenario, window: tuple[int, int] | None = None
             ) -> dict[str, dict[DomainState, int]]:
    """Cycles per domain key and state (only those in ``window``, [start, end) ticks
    inside the trace, if given: the engine starts from the states at its start)."""
    kept = sc.kept()
    times = [e.tsc for e in kept] + [x.tsc for x in sc.losses] + [x.first_tsc for x in sc.losses]
    t0, t1 = min(times), max(times)
    losses = _loss_windows(sc)
    bounds = sorted(set(times) | {a for a, _ in losses} | {b for _, b in losses}
                    | set(window or ()))
    lo, hi = (t0, t1) if window is None else (max(t0, window[0]), min(t1, window[1]))
    vcpus = sorted({(e.dom, e.vcpu) for e in kept})
    per: dict[tuple[int, int], list] = {v: [] for v in vcpus}
    for e in kept:
        per[(e.dom, e.vcpu)].append(e)
    stamps = {v: [e.tsc for e in es] for v, es in per.items()}
    out: dict[str, dict[DomainState, int]] = {}
    for a, b in zip(bounds, bounds[1:], strict=False):
        if b <= lo or a >= hi:
            continue
        lost = any(la <= a < lb for la, lb in losses)
        ended = [lb for _, lb in losses if lb <= a]
        epoch_start = max([t0] + ended)
        epoch_end = min([t1 + 1] + [la for la, _ in losses if la > a])
        by_dom: dict[int, list[int | None]] = {}
        for v in vcpus:
            if lost:
                # during lost data a vCPU counts once it has been seen at all
                if stamps[v][0] <= a:
                    by_dom.setdefault(v[0], []).append(None)
                continue
            s = _state(per[v], stamps[v], a, epoch_start, epoch_end, not ended)
            if s == "absent":
                continue
            by_dom.setdefault(v[0], []).append(s)
        for dom, states in by_dom.items():
            if lost or any(s is None for s in states):
                st = DomainState.LOST
            else:
                st = DOMAIN_STATE[(0 in states, 1 in states, 2 in states or 3 in states)]
            d = out.setdefault(str(dom), {})
            d[st] = d.get(st, 0) + (b - a)
    return out


def _state(mine: list, stamps: list[int], t: int, e0: int, e1: int,
           first_epoch: bool) -> int | None | str:
    """State of a vCPU (its records ``mine``) during [t, next bound): int, None
    (unknown) or "absent"."""
    i = bisect.bisect_right(stamps, t)
    if i > 0 and stamps[i - 1] >= e0:
        return mine[i - 1].new
    if i < len(stamps) and stamps[i] < e1:
        return mine[i].old
    if first_epoch or stamps[0] >= e0:
        return "absent"
    return None
