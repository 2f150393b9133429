"""The converter against the independent model on real traces, and on damaged streams.

``sched_reference`` knows nothing of repairs: on a trace without chain breaks
its figures and the converter's must agree to the ns.  On damaged input
(random prev tasks, stray wakeups, forks, exits, pid reuse, ring-buffer
losses) there is no truth to compare with; what must hold there is what makes
any report sound: rows time-sorted with valid codes, and every domain's and
member's state times adding up to its lifetime.
"""

from __future__ import annotations

import numpy as np
import pytest

from runstate.engine.core import Engine
from runstate.engine.resolve import Resolver
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import LostEvents, SchedEvents, sched_batches
from runstate.sources.linux.schedevents import SchedKind, TaskNames


def random_stream(seed: int, n: int = 4000, n_cpus: int = 3):
    """A damaged trace: lost switches, stray wakeups, forks, exits and pid reuse."""
    rng = np.random.default_rng(seed)
    pids = list(range(100, 112))
    curr = [0] * n_cpus
    rows = []
    t = 1000
    for _ in range(n):
        t += int(rng.integers(0, 40))
        c = int(rng.integers(0, n_cpus))
        r = rng.random()
        if r < 0.55:
            prev = curr[c] if rng.random() > 0.05 else int(rng.choice(pids + [0]))
            nxt = int(rng.choice(pids + [0]))
            if nxt == prev:
                continue
            state = int(rng.choice([0, 0, 1, 2, 0x100, 0x10, 0x20, 0x80]))
            rows.append((t, c, int(SchedKind.SWITCH), prev, nxt, state))
            curr[c] = nxt
        elif r < 0.9:
            kind = SchedKind.WAKEUP if rng.random() < 0.9 else SchedKind.WAKEUP_NEW
            rows.append((t, c, int(kind), int(rng.choice(pids)), -1, 0))
        elif r < 0.95:
            rows.append((t, c, int(SchedKind.FORK), int(rng.choice(pids)), 100, 0))
        else:
            rows.append((t, c, int(SchedKind.EXIT), int(rng.choice(pids)), -1, 0))
    ev = SchedEvents.from_columns(*zip(*rows, strict=True))
    items: list[SchedEvents | LostEvents] = []
    start = 0
    while start < len(ev):
        stop = min(len(ev), start + int(rng.integers(1, 700)))
        items.append(ev.take(np.arange(start, stop)))
        if rng.random() < 0.1:
            items.append(LostEvents(int(rng.integers(0, n_cpus)), int(ev.time[stop - 1]) - 50,
                                    int(ev.time[stop - 1]), int(rng.integers(1, 9))))
        start = stop
    names = TaskNames()
    for p in pids:
        names.comm[p] = f"t{p}"
        names.tgid[p] = 100 + (p % 3)
    return items, names


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("group", ["process", "thread", "filtered"])
def test_damaged_streams_give_sound_figures(seed, group, tmp_path):
    items, names = random_stream(seed)
    filtered = group == "filtered"
    if filtered:
        f = tmp_path / "g.json"
        f.write_text('{"some": [100, 101, 102, 103]}')
        group = str(f)
    options = ReadOptions(group=group)
    reg, info = Registry(), SourceInfo(format="t", path="t")
    resolver = Resolver()
    batches = list(sched_batches("t", items, names, reg, info, options, filtered=filtered))
    for batch in batches:
        resolver.feed(batch)
        member = batch.member >= 0
        assert set(batch.new_state[~member].tolist()) <= {LOSS_BEGIN, LOSS_END}
        codes = set(batch.old_state[member].tolist()) | set(batch.new_state[member].tolist())
        assert codes <= {int(s) for s in MemberState if s != MemberState.UNSEEN}
    times = np.concatenate([b.time for b in batches])
    assert (np.diff(times) >= 0).all()
    start, end = int(times[0]), int(times[-1])
    engine = Engine(reg, start_ticks=start, resolution=resolver.result(reg.n_members),
                    initial=info.initial_states)
    for batch in batches:
        engine.feed(batch)
    result = engine.finish(end)
    for d in result.domains:
        assert sum(s.ticks for s in d.states.values()) == d.lifetime_ticks <= end - start
        for m in d.members:
            assert 0 <= sum(m.ticks.values()) <= end - start
            assert min(m.ticks.values()) >= 0


def test_lost_spans_bracket_the_threads_own_schedstat(data):
    """pinned2 lost switches; each thread printed its own schedstat just before ending.

    The kernel's exact run and run-queue wait ns must lie within what the report
    shows as running / runnable plus what it shows as lost (a 0.5 ms margin: the
    threads read schedstat a moment before their last switch).
    """
    from .helpers import domain, run

    result, src = run(data / "pinned2.perf.data", group="process")
    assert src.info.anomalies["switch_chain_breaks"] > 10
    lines = (data / "pinned2.schedstat.txt").read_text().split("\n")
    d = domain(result, f"rs_load[{int(lines[0])}]")
    members = {int(m.key): m.ticks for m in d.members}
    margin = 500_000
    for line in filter(None, lines[1:]):
        tid, exec_ns, delay_ns = (int(x) for x in line.split()[:3])
        ns = members[tid]
        assert ns["running"] - margin <= exec_ns <= ns["running"] + ns["lost"] + margin
        assert ns["runnable"] - margin <= delay_ns <= ns["runnable"] + ns["lost"] + margin
