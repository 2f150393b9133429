"""The C state machine agrees with the plain-Python reference, row for row."""

from __future__ import annotations

import numpy as np
import pytest

from runstate.model.registry import Registry
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import LostEvents
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames

from .helpers import run
from .sched_reference import sched_batches


def random_stream(seed: int, n: int = 4000, n_cpus: int = 3):
    """A plausible trace with lost switches, stray wakeups, forks, exits and pid reuse."""
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


def convert(items, names, reference, group, filtered=False):
    reg, info = Registry(), SourceInfo(format="t", path="t")
    batches = list(sched_batches("t", items, names, reg, info, ReadOptions(group=group),
                                 reference=reference, filtered=filtered))
    rows = [tuple(int(x) for x in r) for b in batches
            for r in zip(b.time, b.member, b.old_state, b.new_state, strict=True)]
    return rows, dict(info.anomalies), [(m.key, m.domain) for m in reg.members]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("group", ["process", "thread", "filtered"])
def test_c_kernel_matches_reference(seed, group, tmp_path):
    items, names = random_stream(seed)
    filtered = group == "filtered"
    if filtered:
        f = tmp_path / "g.json"
        f.write_text('{"some": [100, 101, 102, 103]}')
        group = str(f)
    ref = convert(items, names, True, group, filtered)
    fast = convert(items, names, False, group, filtered)
    assert fast[2] == ref[2]
    assert fast[1] == ref[1]
    assert fast[0] == ref[0]
    times = [r[0] for r in fast[0]]
    assert times == sorted(times)


def test_fixture_results_match_reference(data, monkeypatch):
    from runstate.sources.linux import perfdata

    from . import sched_reference as sched

    fast, _ = run(data / "sleepy3.perf.data")
    original = sched.sched_batches
    monkeypatch.setattr(perfdata, "sched_batches",
                        lambda *a, **k: original(*a, **k, reference=True))
    ref, _ = run(data / "sleepy3.perf.data")
    assert [(d.key, [(m.key, m.ns) for m in d.members]) for d in fast.domains] == \
        [(d.key, [(m.key, m.ns) for m in d.members]) for d in ref.domains]
    assert fast.anomalies == ref.anomalies
