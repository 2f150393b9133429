"""Engine throughput and memory on a synthetic stream (not a test: run it by hand).

The stream: 1000 domains of 1 to 64 members each, member events with
consistent old states (each event moves its member to one of the two other
states among running / runnable / blocked), strictly sorted times, generated
with numpy chunk by chunk (2^18 rows) so that generation neither dominates the
run time nor holds the whole stream in memory.  Only the engine is timed:
``Engine.feed`` (the events/s figure) and, separately, ``Engine.finish``
(building the result: a fixed cost per member and domain) and the first pass
of exact mode (``Resolver.feed``, timed on the same batches).

Each size runs in its own child process; the parent reads the child's peak
RSS with ``getrusage(RUSAGE_CHILDREN)``.  Memory must not grow with the number
of events (the engine keeps per-member and per-domain state only).

    python bench/engine_bench.py                  # 10 M and 100 M events
    python bench/engine_bench.py --sizes 10000000 --repeat 3
    python bench/engine_bench.py --interval-ns 10000000   # with 10 ms intervals
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from runstate.engine import Engine, Resolver
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import MemberState

CHUNK = 1 << 18
N_DOMAINS = 1000
SEED = 20101118


def build_registry(rng: np.random.Generator) -> Registry:
    registry = Registry()
    for d, size in enumerate(rng.integers(1, 65, N_DOMAINS).tolist()):
        for v in range(size):
            registry.member(f"vm{d}", f"vcpu{v}")
    return registry


class StreamGenerator:
    """Chunks of consistent member events; carries each member's state across chunks."""

    def __init__(self, rng: np.random.Generator, n_members: int) -> None:
        self.rng = rng
        self.state = rng.integers(0, 3, n_members).astype(np.int64)
        self.now = 0

    def chunk(self, n: int) -> EventBatch:
        rng = self.rng
        member = rng.integers(0, self.state.shape[0], n).astype(np.int32)
        step = rng.integers(1, 3, n).astype(np.int64)  # +1 or +2 (mod 3): always a change
        order = np.argsort(member, kind="stable")
        m_sorted = member[order]
        csum = np.cumsum(step[order])
        group_start = np.flatnonzero(np.r_[True, m_sorted[1:] != m_sorted[:-1]])
        group_len = np.diff(np.r_[group_start, n])
        before = np.repeat(np.r_[0, csum[:-1]][group_start], group_len)
        new_sorted = (self.state[m_sorted] + csum - before) % 3
        old_sorted = (self.state[m_sorted] + csum - before - step[order]) % 3
        last = group_start + group_len - 1
        self.state[m_sorted[last]] = new_sorted[last]
        new = np.empty(n, np.int8)
        old = np.empty(n, np.int8)
        new[order] = new_sorted
        old[order] = old_sorted
        times = self.now + np.cumsum(rng.integers(0, 200, n))
        self.now = int(times[-1])
        return EventBatch.from_columns(times, member, old, new)


def run_child(events: int, interval_ns: int | None) -> dict[str, float]:
    """Feed ``events`` rows and time the engine alone."""
    rng = np.random.default_rng(SEED)
    registry = build_registry(rng)
    gen = StreamGenerator(rng, registry.n_members)
    # start every member in its true state, as a first pass would: then any
    # anomaly counted means the generator or the engine is wrong
    initial = {m: MemberState(int(s)) for m, s in enumerate(gen.state.tolist())}
    engine = Engine(registry, start_ticks=0, initial=initial, interval_ticks=interval_ns)
    resolver = Resolver()
    spent = resolving = 0.0
    done = 0
    while done < events:
        batch = gen.chunk(min(CHUNK, events - done))
        t0 = time.perf_counter()
        resolver.feed(batch)
        t1 = time.perf_counter()
        engine.feed(batch)
        spent += time.perf_counter() - t1
        resolving += t1 - t0
        done += len(batch)
    if not np.array_equal(resolver.result(registry.n_members).states[0],
                          [initial[m] for m in range(registry.n_members)]):
        raise AssertionError("the first pass disagrees with the generator")
    t0 = time.perf_counter()
    result = engine.finish()
    finish_s = time.perf_counter() - t0
    anomalies = sum(result.anomalies.values())
    return {
        "events": done,
        "members": registry.n_members,
        "feed_s": spent,
        "finish_s": finish_s,
        "events_per_s": done / spent,
        "resolve_per_s": done / resolving,
        "anomalies": anomalies,
        "self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (best is kept)")
    parser.add_argument("--interval-ns", type=int,
                        help="also account intervals of this length (the stream advances "
                             "about 100 ns per event)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_child(args.child, args.interval_ns)))
        return
    extra = [] if args.interval_ns is None else ["--interval-ns", str(args.interval_ns)]
    for size in args.sizes:
        best = None
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--child", str(size), *extra],
                                 check=True, capture_output=True, text=True).stdout
            figures = json.loads(out)
            if best is None or figures["events_per_s"] > best["events_per_s"]:
                best = figures
        assert best is not None
        children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"{size:>12,} events  {best['members']:,} members in {N_DOMAINS} domains  "
              f"feed {best['feed_s']:.2f} s = {best['events_per_s'] / 1e6:.1f} M events/s  "
              f"(+ finish {best['finish_s']:.2f} s)  "
              f"first pass {best['resolve_per_s'] / 1e6:.0f} M events/s  "
              f"peak RSS {best['self_maxrss_mib']:.0f} MiB "
              f"(children so far: {children_rss:.0f} MiB)  anomalies {best['anomalies']}")


if __name__ == "__main__":
    main()
