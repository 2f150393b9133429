"""Benchmark: the exact xentrace pipeline on a trace like the one xenalyze was timed on.

The reference trace: 8 pcpus, 34 vCPUs in 5 domains, 40.7 MB, 1.94 M runstate
records; ``xenalyze -s`` took 1.04 s median wall and 82 MiB peak RSS on this
machine kind (the figure the goal was set from).  Give ``--xenalyze PATH`` (or
set XENALYZE) to time a real xenalyze binary on the same files in the same run,
alternating with ``runstate report`` as a user runs it (process start included).

This script writes a seeded random scheduler-consistent trace of that shape
with the package's writer (runstate records, plus one unrelated scheduler
record every 8 records so the file size matches) into bench/out/, and a 4x
longer one, then runs ``analyze`` (two passes, as ``runstate report`` does) in
a fresh subprocess per run and reports the median wall time of the analysis
and the subprocess's peak RSS.

    python bench/xentrace_bench.py [--runs 5] [--scale 1 4] [--xenalyze PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from runstate.sources.xentrace.writer import XentraceWriter

OUT = Path(__file__).parent / "out"
DOMAINS = ((0, 4), (1, 8), (2, 8), (3, 8), (4, 6))  # 34 vCPUs in 5 domains
PCPUS = 8
RUNSTATE_RECORDS = 1_940_000
XENALYZE_WALL_S = 1.04
XENALYZE_RSS_MIB = 82

CHILD = """
import json, resource, sys, time
from runstate.analysis.pipeline import analyze
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source
t0 = time.perf_counter()
result = analyze(open_source(sys.argv[1], ReadOptions(cpu_hz=2.4e9)))
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "rss_mib": rss, "domains": len(result.domains)}))
"""


def generate(path: Path, records: int, seed: int) -> None:
    """Stream a random scheduler-consistent trace with ``records`` runstate records."""
    rng = random.Random(seed)
    guests = [(d, v) for d, n in DOMAINS for v in range(n)]
    state = {g: rng.choice((1, 2)) for g in guests}
    ready = [g for g in guests if state[g] == 1]
    current = [(32767, p) for p in range(PCPUS)]
    t = 1_000_000_000_000
    poll_every = 240_000_000  # 100 ms at 2.4 GHz
    next_poll = t + poll_every
    written = 0
    with open(path, "wb") as f:
        w = XentraceWriter(f)

        def put(p: int, g: tuple[int, int], old: int, new: int) -> None:
            nonlocal written
            w.runstate_change(p, t, g[0], g[1], old, new)
            written += 1
            if written % 8 == 0:
                w.other(p, 0x00022001, (1, 2, 3), t)

        while written < records:
            t += 4 * rng.randint(1, 4400)
            if t >= next_poll:
                w.poll()
                next_poll += poll_every
            p = rng.randrange(PCPUS)
            r = rng.random()
            if r < 0.5:
                prev = current[p]
                idle = (32767, p)
                if ready and (prev == idle or rng.random() < 0.8):
                    nxt = ready.pop(rng.randrange(len(ready)))
                elif prev != idle:
                    nxt = idle
                else:
                    w.continue_running(p, t, prev[0], prev[1])
                    continue
                after = 1 if prev == idle or rng.random() < 0.4 else 2
                put(p, prev, 0, after)
                if prev != idle:
                    state[prev] = after
                    if after == 1:
                        ready.append(prev)
                t += 4
                put(p, nxt, 1, 0)
                if nxt != idle:
                    state[nxt] = 0
                current[p] = nxt
            elif r < 0.85:
                g = rng.choice(guests)
                if state[g] == 2:
                    put(p, g, 2, 1)
                    state[g] = 1
                    ready.append(g)
            else:
                g = current[p]
                w.continue_running(p, t, g[0], g[1])
        w.close()


def measure(path: Path, runs: int) -> dict[str, float]:
    walls, rss = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True,
                             capture_output=True, text=True).stdout
        fig = json.loads(out)
        walls.append(fig["wall"])
        rss.append(fig["rss_mib"])
    return {"wall_median_s": statistics.median(walls), "wall_min_s": min(walls),
            "rss_max_mib": max(rss)}


def command_figures(commands: dict[str, list[str]], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall seconds and max RSS MiB of each command, runs alternating (GNU time)."""
    timer = shutil.which("time") or "/usr/bin/time"
    walls: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            proc = subprocess.run([timer, "-f", "%e %M", *argv], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, check=True)
            wall, kib = proc.stderr.strip().splitlines()[-1].split()
            walls[name].append(float(wall))
            rss[name].append(int(kib) / 1024)
    return {k: (statistics.median(walls[k]), max(rss[k])) for k in commands}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scale", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--xenalyze", default=os.environ.get("XENALYZE"),
                    help="a xenalyze binary to time on the same files")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    for scale in args.scale:
        path = OUT / f"xen_bench_x{scale}_s{args.seed}.trace"
        if not path.exists():
            generate(path, RUNSTATE_RECORDS * scale, args.seed)
        size_mb = path.stat().st_size / 1e6
        fig = measure(path, args.runs)
        speedup = XENALYZE_WALL_S * scale / fig["wall_median_s"]
        print(f"x{scale}: {size_mb:.1f} MB  analyze median {fig['wall_median_s']:.3f} s "
              f"(min {fig['wall_min_s']:.3f})  peak RSS {fig['rss_max_mib']:.0f} MiB  "
              f"throughput vs xenalyze (1.04 s per 40.7 MB, recorded): {speedup:.1f}x")
        if args.xenalyze:
            runstate = shutil.which("runstate") or "runstate"
            figs = command_figures({
                "xenalyze -s": [args.xenalyze, "-s", "--cpu-hz=2.4G", str(path)],
                "runstate report": [runstate, "report", str(path), "--cpu-hz", "2.4G"],
            }, args.runs)
            for name, (wall, mib) in figs.items():
                print(f"    same run, whole command: {name:<16} median {wall:.2f} s, "
                      f"peak RSS {mib:.0f} MiB")


if __name__ == "__main__":
    main()
