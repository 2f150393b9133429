"""Dropped switches and wakeups become lost spans: the truth always lies within what is reported.

A small scheduler simulation writes a complete, consistent trace; the
independent model in :mod:`.sched_reference` reads the truth off it.  Events
are then removed the way ftrace and perf lose them on a real kernel (a task's
switch-in, with or without the wakeup before it, then the task is seen
switching out), the rest goes through the converter and the engine, and for
every domain, member and state the truth must lie in
``[reported, reported + lost]``.  With nothing removed, nothing may be lost and
every figure must be exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstate.engine.core import Engine
from runstate.engine.resolve import Resolver
from runstate.model.registry import Registry
from runstate.model.states import DomainState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import sched_batches
from runstate.sources.linux.schedevents import SchedEvents, TaskNames

from .sched_reference import (
    BLOCKED,
    RUNNABLE,
    RUNNING,
    SEEN,
    SWITCH,
    WAKEUP,
    Event,
    Truth,
    truth,
)

GROUPS = {"left": [100, 101, 102], "right": [103, 104]}
TIDS = [t for tids in GROUPS.values() for t in tids] + [200]  # 200 is in no group


@dataclass
class _Sim:
    """A toy scheduler: who runs where, who waits, who sleeps."""

    rng: np.random.Generator
    n_cpus: int
    curr: list[int] = field(default_factory=list)
    state: dict[int, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    t: int = 1_000


def simulate(seed: int, steps: int = 160, n_cpus: int = 2, ticks: bool = False) -> list[Event]:
    """A complete trace: every CPU switches, wakeups only of sleeping tasks (mostly).

    ``ticks``: timer events too, each naming the task its CPU runs (as
    ``hrtimer_expire_entry``'s common_pid does).
    """
    sim = _Sim(np.random.default_rng(seed), n_cpus)
    rng = sim.rng
    sim.curr = [int(rng.choice(TIDS)) if rng.random() < 0.5 else 0 for _ in range(n_cpus)]
    if n_cpus > 1 and sim.curr[0] == sim.curr[1] != 0:
        sim.curr[1] = 0
    for tid in TIDS:
        sim.state[tid] = RUNNING if tid in sim.curr else str(rng.choice([RUNNABLE, BLOCKED]))
    for c in range(n_cpus):
        _switch(sim, c)
    for _ in range(steps):
        sim.t += int(rng.integers(1, 60))
        if ticks and rng.random() < 0.3:
            c = int(rng.integers(0, n_cpus))
            sim.events.append(Event(sim.t, c, SEEN, sim.curr[c], actor=sim.curr[c]))
        elif rng.random() < 0.35:
            _wake(sim)
        else:
            _switch(sim, int(rng.integers(0, n_cpus)))
    return sim.events


def _wake(sim: _Sim) -> None:
    sleeping = [t for t in TIDS if sim.state[t] == BLOCKED]
    running = [t for t in sim.curr if t]
    # a wakeup of a running task is legal (it had not switched out yet) and changes
    # nothing; a task that switched out runnable is not woken
    if running and (sim.rng.random() < 0.1 or not sleeping):
        tid = int(sim.rng.choice(running))
    elif sleeping:
        tid = int(sim.rng.choice(sleeping))
    else:
        return
    cpu = int(sim.rng.integers(0, sim.n_cpus))
    sim.events.append(Event(sim.t, cpu, WAKEUP, tid, actor=sim.curr[cpu]))
    if sim.state[tid] == BLOCKED:
        sim.state[tid] = RUNNABLE


def _switch(sim: _Sim, c: int) -> None:
    prev = sim.curr[c]
    waiting = [t for t in TIDS if sim.state[t] == RUNNABLE]
    nxt = int(sim.rng.choice(waiting)) if waiting and sim.rng.random() < 0.85 else 0
    if nxt == prev:
        return
    prev_state = 0
    if prev:
        prev_state = int(sim.rng.choice([0, 1, 1, 2]))
        sim.state[prev] = RUNNABLE if prev_state == 0 else BLOCKED
    if nxt:
        sim.state[nxt] = RUNNING
    sim.curr[c] = nxt
    sim.events.append(Event(sim.t, c, SWITCH, prev, nxt, prev_state))


def drop(events: list[Event], seed: int, rate: float) -> list[Event]:
    """Remove switch-ins (and maybe the wakeups before them) the way tracers lose them.

    A switch may go only if the next switch on its CPU stays (the task is then
    seen switching out); a wakeup only if the task's next event is its
    switch-in.  A task's first event, a CPU's first switch and the trace's
    first and last events stay, so the window and first states are the same.
    """
    rng = np.random.default_rng(seed)
    keep = [True] * len(events)
    seen: set[object] = set()
    first = set()
    for i, ev in enumerate(events):
        keys = [("cpu", ev.cpu)] if ev.kind == SWITCH else []
        keys += [ev.pid, ev.other] if ev.kind == SWITCH else [ev.pid]
        if any(k not in seen for k in keys if k != 0):
            first.add(i)
        seen.update(keys)
    next_switch = {}
    for i, ev in enumerate(events):
        if ev.kind != SWITCH:
            continue
        later = [j for j in range(i + 1, len(events))
                 if events[j].kind == SWITCH and events[j].cpu == ev.cpu]
        next_switch[i] = later[0] if later else None
    forced = set()
    for i, ev in enumerate(events):
        if i in first or i in forced or i in (0, len(events) - 1) or rng.random() >= rate:
            continue
        if ev.kind == SWITCH and next_switch[i] is not None and \
                _unambiguous(events, i, next_switch[i]):
            keep[i] = False
            forced.add(next_switch[i])
        elif ev.kind == WAKEUP and _next_is_switch_in(events, i):
            keep[i] = False
    return [ev for ev, k in zip(events, keep, strict=True) if k]


def _unambiguous(events: list[Event], i: int, j: int) -> bool:
    """No wakeup reaches the task switched in by switch i while it runs.

    Such a wakeup (legal: of a running task) reads, with the switch-in lost, as
    the wakeup of a task not running yet: the converter takes a recorded wakeup
    of a task it does not know to be running as what it says, so a trace that
    loses a switch-in and then records such a wakeup is beyond what it can tell.
    """
    del j
    tid = events[i].other
    if tid == 0:
        return True
    for ev in events[i + 1:]:
        if ev.kind == SWITCH and ev.pid == tid:
            return True
        if ev.kind == WAKEUP and ev.pid == tid:
            return False
    return True


def _next_is_switch_in(events: list[Event], i: int) -> bool:
    """The task's next event is its switch-in, and no wakeup reaches it before it runs out.

    A wakeup of a running task (legal: it had not switched out yet) after a lost
    wakeup and a lost switch-in would look like its real wakeup; the converter
    takes a recorded wakeup of a task it believes asleep as what it says.
    """
    tid = events[i].pid
    switched_in = False
    for ev in events[i + 1:]:
        if ev.kind == SWITCH and tid in (ev.pid, ev.other):
            if ev.pid == tid:
                return switched_in
            switched_in = True
        if ev.kind == WAKEUP and ev.pid == tid:
            return False
    return False


@dataclass(frozen=True)
class Reported:
    domains: dict[str, dict[str, int]]
    members: dict[str, dict[str, dict[str, int]]]
    uncertain: dict[str, dict[str, int]]
    anomalies: dict[str, int]


def report(events: list[Event], group_file: Path, chunk: int = 37,
           actors: bool = True) -> Reported:
    """Convert and account ``events`` as the readers do (two passes, in chunks)."""
    names = TaskNames()
    for tid in TIDS:
        names.comm[tid] = f"t{tid}"
        names.tgid[tid] = tid

    def items() -> list[SchedEvents]:
        cols = [(e.time, e.cpu, e.kind, e.pid, e.other, e.prev_state, e.actor) for e in events]
        if not actors:  # as a reader without common_pid gives them
            cols = [c[:6] for c in cols]
        return [SchedEvents.from_columns(*zip(*cols[i:i + chunk], strict=True))
                for i in range(0, len(cols), chunk)]

    options = ReadOptions(group=str(group_file))
    resolver = Resolver()
    reg, info = Registry(), SourceInfo(format="t", path="t")
    for batch in sched_batches("t", items(), names, reg, info, options):
        resolver.feed(batch)
    # as the pipeline does: the second pass re-registers into the first pass's registry
    info.anomalies.clear()
    engine = Engine(reg, start_ticks=events[0].time,
                    resolution=resolver.result(reg.n_members), initial=info.initial_states)
    for batch in sched_batches("t", items(), names, reg, info, options):
        engine.feed(batch)
    result = engine.finish(events[-1].time)
    domains = {d.key.removeprefix("group:"): {s.label: d.states[s].ticks for s in DomainState}
               for d in result.domains}
    members = {d.key.removeprefix("group:"): {m.key: dict(m.ticks) for m in d.members}
               for d in result.domains}
    return Reported(domains, members, info.uncertain_ticks, dict(info.anomalies))


def check_bracketed(real: Truth, got: Reported) -> None:
    """truth in [shown - late, shown + lost + late]; ``late``: the domain's ``detected_late``."""
    def late(key: str, member: str | None = None) -> int:
        del member  # counted per domain: a bound for each of its members too
        full = key if key == "host-idle" else f"group:{key}"
        return got.uncertain.get(full, {}).get("detected_late", 0)

    for key, states in real.domains.items():
        lost, slack = got.domains[key]["lost"], late(key)
        for state, ns in states.items():
            shown = got.domains[key][state]
            assert shown - slack <= ns <= shown + lost + slack, (key, state, ns, shown, lost)
    for key, members in real.members.items():
        for member, states in members.items():
            row, slack = got.members[key][member], late(key, member)
            for state, ns in states.items():
                assert row[state] - slack <= ns <= row[state] + row["lost"] + slack, \
                    (key, member, state, ns, row)


@pytest.fixture(scope="module")
def group_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("groups") / "groups.json"
    path.write_text(json.dumps(GROUPS))
    return path


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_complete_trace_is_exact(seed: int, group_file: Path) -> None:
    events = simulate(seed)
    real = truth(events, GROUPS, range(2))
    got = report(events, group_file)
    for key, states in real.domains.items():
        assert got.domains[key]["lost"] == 0
        assert {s: got.domains[key][s] for s in states} == states
    for key, members in real.members.items():
        for member, states in members.items():
            assert got.members[key][member]["lost"] == 0
            assert {s: got.members[key][member][s] for s in states} == states
    assert got.uncertain == {}


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), rate=st.sampled_from([0.05, 0.15, 0.4]))
def test_dropped_events_are_bracketed(seed: int, rate: float, group_file: Path) -> None:
    events = simulate(seed)
    real = truth(events, GROUPS, range(2))
    kept = drop(events, seed, rate)
    whole = report(kept, group_file, chunk=len(kept))
    assert all("detected_late" not in causes for causes in whole.uncertain.values())
    check_bracketed(real, whole)
    # without the actor column (the task current where an event was recorded), spans
    # end only at the next switch
    check_bracketed(real, report(kept, group_file, chunk=len(kept), actors=False))
    # in small chunks, a span may begin before rows already handed on: that part
    # is not shown as lost but reported as uncertain ("detected_late")
    check_bracketed(real, report(kept, group_file, chunk=7))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), rate=st.sampled_from([0.05, 0.15, 0.4]))
def test_ticks_keep_the_truth_bracketed(seed: int, rate: float, group_file: Path) -> None:
    """Timer events (the task each CPU runs) end spans early; the truth stays bracketed,
    and a complete trace with ticks is still exact."""
    events = simulate(seed, ticks=True)
    real = truth(events, GROUPS, range(2))
    exact = report(events, group_file)
    for key, states in real.domains.items():
        assert exact.domains[key]["lost"] == 0
        assert {s: exact.domains[key][s] for s in states} == states
    kept = drop(events, seed, rate)
    check_bracketed(real, report(kept, group_file, chunk=len(kept)))
    check_bracketed(real, report(kept, group_file, chunk=7))


def _spinner_trace(ticks: bool) -> list[Event]:
    """Task 100 spins from 3 to 10 us on cpu0; its switch-in at 3 us was not recorded."""
    events = [Event(1000, 0, SWITCH, 0, 100, 0),        # 100 in
              Event(1500, 1, SWITCH, 0, 102, 0),        # cpu1 busy with 102 throughout
              Event(2000, 0, SWITCH, 100, 101, 0),      # 100 preempted (R), 101 in
              # Event(3000, 0, SWITCH, 101, 100, 1)     # 101 sleeps, 100 in: dropped
              Event(10_000, 0, SWITCH, 100, 0, 1),      # 100 sleeps
              Event(10_500, 1, WAKEUP, 101, actor=102),  # 101 had slept
              Event(11_000, 1, SWITCH, 102, 0, 1)]
    if ticks:
        events += [Event(t, 0, SEEN, 100, actor=100) for t in range(3400, 10_000, 1000)]
    return sorted(events, key=lambda e: e.time)


def test_a_tick_ends_the_span_of_a_spinning_task(group_file: Path) -> None:
    """Worked out by hand (ns): without ticks 100 is lost from 2001 (the CPU's last
    switch + 1) to its switch-out at 10000; with a tick every 1000 from 3400, only up
    to the first tick, and it runs from there."""
    spinner = _spinner_trace(ticks=False)
    without = report(spinner, group_file).members["left"]["100"]
    assert without["lost"] == 10_000 - 2001
    with_ticks = report(_spinner_trace(ticks=True), group_file).members["left"]["100"]
    assert with_ticks["lost"] == 3400 - 2001
    assert with_ticks["running"] == (2000 - 1000) + (10_000 - 3400)
    check_bracketed(truth(_spinner_trace(ticks=False) + [Event(3000, 0, SWITCH, 101, 100, 1)],
                          GROUPS, range(2)), report(_spinner_trace(ticks=True), group_file))


def test_handmade_drops_are_lost_and_explained(data, run_cli):
    """``drops-handmade.perf-script.txt``: a 2-vCPU guest on 2 CPUs, every kind of
    drop once.  Worked out by hand (ms):

    * vCPU 0 blocks at 1, is woken at 2 (recorded), its switch-in is lost, it
      switches out at 3: it waited or ran from 2 (+1 ns) to 3 -> lost.
    * vCPU 1 blocks at 0.5; its wakeup and switch-in are lost; it switches out
      at 2.5: from its block at 0.5 on, nothing is known -> lost 0.5 .. 2.5.
    * vCPU 1 switches in at 3.5 with its wakeup lost: lost 2.5 .. 3.5.
    So the VM: full_run 0 .. 0.5, lost 0.5 .. 3.5, partial_run 3.5 .. 4.
    """
    path = data / "drops-handmade.perf-script.txt"
    res = run_cli("report", "--group", "vm", "--format", "json", str(path))
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    (vm,) = doc["domains"]
    ms = 1_000_000
    states = {s: v["ns"] for s, v in vm["states"].items() if v["ns"]}
    assert states == {"full_run": ms // 2, "lost": 3 * ms, "partial_run": ms // 2}
    members = {m["name"]: {k: v["ns"] for k, v in m["states"].items() if v["ns"]}
               for m in vm["members"]}
    assert members["vcpu0"] == {"running": ms, "runnable": 1, "blocked": 2 * ms,
                                "lost": ms - 1}
    assert members["vcpu1"] == {"running": ms, "lost": 3 * ms}
    assert vm["uncertain_ns"] == {"lost_switch": ms - 1, "lost_wakeup": 3 * ms}
    assert doc["anomalies"]["switch_chain_breaks"] == 2
    assert doc["anomalies"]["switch_in_time_unknown"] == 1
    assert doc["anomalies"]["switch_in_not_runnable"] == 1
    table = " ".join(run_cli("report", "--group", "vm", str(path)).out.split())  # unwrapped
    assert "switch_chain_breaks 2 (shown as lost)" in table
    assert "a live `runstate top --source bpf` on this host finds such a drop" in table
    # the idle CPUs' spans count too: cpu0 2 .. 3, cpu1 0.5 .. 2.5
    assert "uncertain: lost switch 4.0 ms, lost wakeup 3.0 ms of member time, shown as lost" \
        in table
    assert "host idle: cpu0 50.0% (+25.0% unknown), cpu1 25.0% (+50.0% unknown)" in table
