"""Random, scheduler-consistent Xen scenarios and their xentrace files.

A :class:`Scenario` is ground truth: every vCPU's initial state, every
runstate record in time order (including those dropped by a simulated full
ring), the resulting lost-record windows and the wrap padding.  Tests compare
what the reader and the engine make of the written file with what the
scenario says; the benchmark uses it to make large traces.

Scheduler consistency: a pcpu always runs exactly one vCPU (a guest vCPU or
its idle vCPU, domain 32767, vcpu = pcpu); a context switch is the pair
``prev running -> X`` then ``next runnable -> running`` on that pcpu; wakes
(``blocked/offline -> runnable``) are written on any pcpu.  TSCs are
distinct and multiples of 4, so lost and wrap records can sit between them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import BinaryIO

from runstate.sources.xentrace.constants import IDLE_DOMAIN
from runstate.sources.xentrace.writer import WindowStats, XentraceWriter

RUNNING, RUNNABLE, BLOCKED, OFFLINE = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class SynthEvent:
    """One scheduler record of the scenario."""

    tsc: int
    pcpu: int
    dom: int
    vcpu: int
    old: int
    new: int
    #: True for TRC_SCHED_CONTINUE_RUNNING (old == new == running)
    cont: bool = False
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class SynthLoss:
    """A ``TRC_LOST_RECORDS`` record: records of ``pcpu`` from ``first_tsc`` were dropped."""

    pcpu: int
    tsc: int
    first_tsc: int
    count: int
    dom: int
    vcpu: int


@dataclass(slots=True)
class Scenario:
    cpu_hz: float
    tsc_base: int
    n_pcpus: int
    #: domain id -> number of vCPUs (guests only; the idle domain has one per pcpu)
    domains: dict[int, int]
    #: (dom, vcpu) -> state at tsc_base
    initial: dict[tuple[int, int], int]
    events: list[SynthEvent] = field(default_factory=list)
    losses: list[SynthLoss] = field(default_factory=list)
    #: (pcpu, tsc of the record it precedes, extra words, with TSC)
    wraps: list[tuple[int, int, int, bool]] = field(default_factory=list)

    def kept(self) -> list[SynthEvent]:
        return [e for e in self.events if not e.dropped]


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """Knobs of :func:`generate`."""

    n_pcpus: int = 2
    domains: tuple[tuple[int, int], ...] = ((0, 2), (1, 3), (2, 1))
    steps: int = 200
    cpu_hz: float = 2.4e9
    tsc_base: int = 1_000_000_000_000
    #: mean gap between steps, in TSC cycles
    gap: int = 40_000
    #: probability that a pcpu stream gets a dropped span (per pcpu)
    loss: float = 0.0
    #: probability of a wrap record before a record
    wrap: float = 0.0
    #: probability that a descheduled vCPU goes offline rather than blocked
    offline: float = 0.05


def generate(seed: int, config: SynthConfig = SynthConfig()) -> Scenario:
    """A random scenario; the same seed and config give the same scenario."""
    rng = random.Random(seed)
    guests = [(d, v) for d, n in config.domains for v in range(n)]
    state: dict[tuple[int, int], int] = {
        g: rng.choices((RUNNABLE, BLOCKED, OFFLINE), (5, 4, 1))[0] for g in guests}
    current: list[tuple[int, int]] = []
    for p in range(config.n_pcpus):
        ready = [g for g in guests if state[g] == RUNNABLE]
        if ready and rng.random() < 0.6:
            g = rng.choice(ready)
            state[g] = RUNNING
            current.append(g)
            state[(IDLE_DOMAIN, p)] = RUNNABLE
        else:
            current.append((IDLE_DOMAIN, p))
            state[(IDLE_DOMAIN, p)] = RUNNING
    sc = Scenario(config.cpu_hz, config.tsc_base, config.n_pcpus, dict(config.domains),
                  dict(state))
    t = config.tsc_base
    events: list[SynthEvent] = []
    for _ in range(config.steps):
        t += 4 * rng.randint(1, max(1, config.gap // 2))
        action = rng.random()
        p = rng.randrange(config.n_pcpus)
        if action < 0.45:
            t = _switch(rng, config, p, t, state, current, guests, events)
        elif action < 0.8:
            sleepers = [g for g in guests if state[g] in (BLOCKED, OFFLINE)]
            if sleepers:
                g = rng.choice(sleepers)
                events.append(SynthEvent(t, p, g[0], g[1], state[g], RUNNABLE))
                state[g] = RUNNABLE
        else:
            g = current[p]
            events.append(SynthEvent(t, p, g[0], g[1], RUNNING, RUNNING, cont=True))
    sc.events = events
    _drop(rng, config, sc)
    _wraps(rng, config, sc)
    return sc


def _switch(rng: random.Random, config: SynthConfig, p: int, t: int,
            state: dict[tuple[int, int], int], current: list[tuple[int, int]],
            guests: list[tuple[int, int]], events: list[SynthEvent]) -> int:
    prev = current[p]
    idle = (IDLE_DOMAIN, p)
    ready = [g for g in guests if state[g] == RUNNABLE]
    options = ready + ([idle] if prev != idle else [])
    if not options:
        events.append(SynthEvent(t, p, prev[0], prev[1], RUNNING, RUNNING, cont=True))
        return t
    nxt = rng.choice(options)
    if prev == idle:
        after = RUNNABLE
    else:
        r = rng.random()
        after = OFFLINE if r < config.offline else (RUNNABLE if r < 0.45 else BLOCKED)
    events.append(SynthEvent(t, p, prev[0], prev[1], RUNNING, after))
    state[prev] = after
    t += 4 * rng.randint(1, 3)
    events.append(SynthEvent(t, p, nxt[0], nxt[1], RUNNABLE, RUNNING))
    state[nxt] = RUNNING
    current[p] = nxt
    return t


def _drop(rng: random.Random, config: SynthConfig, sc: Scenario) -> None:
    """Drop a span of records on some pcpus; a lost record precedes the next kept one."""
    if config.loss <= 0:
        return
    events = sc.events
    for p in range(config.n_pcpus):
        if rng.random() >= config.loss:
            continue
        mine = [i for i, e in enumerate(events) if e.pcpu == p]
        if len(mine) < 4:
            continue
        a = rng.randrange(0, len(mine) - 2)
        b = rng.randrange(a + 1, min(len(mine) - 1, a + 8) + 1)
        for i in mine[a:b]:
            e = events[i]
            events[i] = SynthEvent(e.tsc, e.pcpu, e.dom, e.vcpu, e.old, e.new, e.cont, True)
        nxt = events[mine[b]]
        cur = _current_before(sc, p, nxt.tsc)
        sc.losses.append(SynthLoss(p, nxt.tsc - 1, events[mine[a]].tsc, b - a, cur[0], cur[1]))
    sc.losses.sort(key=lambda x: x.tsc)


def _current_before(sc: Scenario, p: int, tsc: int) -> tuple[int, int]:
    """Who runs on pcpu ``p`` just before ``tsc`` (from the full scenario)."""
    cur = next((g for g, s in sc.initial.items() if s == RUNNING and
                _initial_pcpu(sc, g) == p), (IDLE_DOMAIN, p))
    for e in sc.events:
        if e.tsc >= tsc:
            break
        if e.pcpu == p and e.new == RUNNING and not e.cont:
            cur = (e.dom, e.vcpu)
    return cur


def _initial_pcpu(sc: Scenario, g: tuple[int, int]) -> int | None:
    """The pcpu a vCPU running at the start runs on: where it is first switched out."""
    if g[0] == IDLE_DOMAIN:
        return g[1]
    for e in sc.events:
        if (e.dom, e.vcpu) == g and e.old == RUNNING and not e.cont:
            return e.pcpu
        if (e.dom, e.vcpu) == g and e.cont:
            return e.pcpu
    return None


def _wraps(rng: random.Random, config: SynthConfig, sc: Scenario) -> None:
    if config.wrap <= 0:
        return
    for e in sc.events:
        if not e.dropped and rng.random() < config.wrap:
            with_tsc = rng.random() < 0.3
            sc.wraps.append((e.pcpu, e.tsc, rng.randrange(0, 8), with_tsc))


def write(sc: Scenario, out: BinaryIO, *, seed: int = 0, poll: int = 400_000,
          high_water: int = 2048, other_every: int = 0, early_cpu: bool = False) -> WindowStats:
    """Write ``sc`` as a xentrace file: polling rounds every ``poll`` cycles, and an
    extra round when a pcpu holds ``high_water`` bytes (as xentrace does when a
    ring passes its high-water mark); with ``early_cpu`` only that pcpu's window
    is written then, which interleaves pcpus more than xentrace would.  With
    ``other_every`` > 0, an unrelated scheduler record follows every that many
    records (the reader must skip it)."""
    rng = random.Random(seed)
    w = XentraceWriter(out)
    wraps: dict[tuple[int, int], tuple[int, bool]] = {
        (p, t): (n, c) for p, t, n, c in sc.wraps}
    losses = {(x.pcpu, x.tsc + 1): x for x in sc.losses}
    next_poll = sc.tsc_base + poll
    count = 0
    for e in sc.events:
        while e.tsc >= next_poll:
            w.poll()
            next_poll += rng.randint(poll // 2, poll * 3 // 2)
        if e.dropped:
            continue
        wrap = wraps.get((e.pcpu, e.tsc))
        if wrap is not None:
            w.wrap(e.pcpu, wrap[0], e.tsc - 2 if wrap[1] else None)
        loss = losses.get((e.pcpu, e.tsc))
        if loss is not None:
            w.lost_records(loss.pcpu, loss.tsc, loss.count, loss.dom, loss.vcpu, loss.first_tsc)
        if e.cont:
            w.continue_running(e.pcpu, e.tsc, e.dom, e.vcpu)
        else:
            w.runstate_change(e.pcpu, e.tsc, e.dom, e.vcpu, e.old, e.new)
        count += 1
        if other_every and count % other_every == 0:
            # TRC_SCHED_VERBOSE-class record with 3 data words: skipped by the reader
            w.other(e.pcpu, 0x00022001, (1, 2, 3), e.tsc)
        if w.pending(e.pcpu) >= high_water:
            if early_cpu:
                w.flush(e.pcpu)
            else:
                w.poll()
    return w.close()
