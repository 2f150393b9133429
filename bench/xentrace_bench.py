"""Benchmark: ``runstate report`` on Xen traces against ``xenalyze -s``, as a user runs them.

Whole commands, process start included, in one run and alternating (so both
see the same machine): ``runstate report FILE --cpu-hz 2.4G``, ``xenalyze -s
--cpu-hz=2.4G FILE`` (give ``--xenalyze PATH``, or set XENALYZE; build one with
``bench/build_xenalyze.sh``) and ``cat FILE > /dev/null`` (what reading the
file from the page cache costs), and ``runstate report`` on a trace of a few
records (the command's start-up and report alone: no speed of reading makes
the command faster than that, so against xenalyze it is the ceiling of the
ratio).  For each: the median wall time, the median CPU time (user + sys:
less moved by other work on the machine), the throughput and the peak RSS
(GNU time), then the ratios to runstate.  A secondary line times
``analyze()`` alone (both passes, no start-up, no report) in a fresh
process.

The traces are seeded random scheduler-consistent traces of the reference
shape: 8 pcpus, 34 vCPUs in 5 domains, 1.94 M runstate records (plus one
unrelated scheduler record every 8 records) per 41 MB.  ``--scale N`` makes
a trace N times as long, written once into bench/out/ (delete a file to
write it again): scale 1 and 4 by the package's writer from the Python
scheduler model (as they always were), larger scales by repeating a block
that ends in the scheduler state it starts in, each copy's TSCs shifted
past the one before (``--scale 25`` is about 1 GB and takes seconds).

    python bench/xentrace_bench.py [--runs 5] [--scale 1 4 25] [--xenalyze PATH]
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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runstate.sources.xentrace.walk import Walker
from runstate.sources.xentrace.writer import XentraceWriter

OUT = Path(__file__).parent / "out"
#: a trace of a few records: its report is the command's start-up and report alone
TINY_TRACE = Path(__file__).resolve().parents[1] / "tests" / "data" / "xen" / "c01_basic.trace"
TINY = "runstate, tiny"
DOMAINS = ((0, 4), (1, 8), (2, 8), (3, 8), (4, 6))  # 34 vCPUs in 5 domains
PCPUS = 8
IDLE = 32767
RUNNABLE, BLOCKED = 1, 2
RUNSTATE_RECORDS = 1_940_000
#: scales the Python model writes directly; larger ones repeat a block
DIRECT_SCALES = (1, 4)

CHILD = """
import json, resource, sys, time
from runstate.analysis.pipeline import analyze
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source
t0, c0 = time.perf_counter(), time.process_time()
result = analyze(open_source(sys.argv[1], ReadOptions(cpu_hz=2.4e9)))
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mib": rss, "domains": len(result.domains)}))
"""


class _Scheduler:
    """The toy scheduler behind the traces: xentrace records of random switches,
    wakes and continue-running records, 4 to 17600 cycles apart."""

    def __init__(self, f: object, seed: int) -> None:
        self.rng = random.Random(seed)
        self.w = XentraceWriter(f)  # type: ignore[arg-type]
        self.guests = [(d, v) for d, n in DOMAINS for v in range(n)]
        self.initial = {g: self.rng.choice((RUNNABLE, BLOCKED)) for g in self.guests}
        self.state = dict(self.initial)
        self.ready = [g for g in self.guests if self.state[g] == RUNNABLE]
        self.current = [(IDLE, p) for p in range(PCPUS)]
        self.t = 1_000_000_000_000
        self.poll_every = 240_000_000  # 100 ms at 2.4 GHz
        self.next_poll = self.t + self.poll_every
        self.written = 0

    def put(self, p: int, g: tuple[int, int], old: int, new: int) -> None:
        self.w.runstate_change(p, self.t, g[0], g[1], old, new)
        self.written += 1
        if self.written % 8 == 0:
            self.w.other(p, 0x00022001, (1, 2, 3), self.t)

    def step(self) -> None:
        rng = self.rng
        self.t += 4 * rng.randint(1, 4400)
        if self.t >= self.next_poll:
            self.w.poll()
            self.next_poll += self.poll_every
        p = rng.randrange(PCPUS)
        r = rng.random()
        if r < 0.5:
            self.switch(p)
        elif r < 0.85:
            g = rng.choice(self.guests)
            if self.state[g] == BLOCKED:
                self.put(p, g, BLOCKED, RUNNABLE)
                self.state[g] = RUNNABLE
                self.ready.append(g)
        else:
            g = self.current[p]
            self.w.continue_running(p, self.t, g[0], g[1])

    def switch(self, p: int, nxt: tuple[int, int] | None = None, after: int | None = None
               ) -> None:
        """A context switch on pcpu ``p`` (to ``nxt``, the previous vCPU going to
        ``after``, if given; random otherwise)."""
        rng = self.rng
        prev, idle = self.current[p], (IDLE, p)
        if nxt is None:
            if self.ready and (prev == idle or rng.random() < 0.8):
                nxt = self.ready.pop(rng.randrange(len(self.ready)))
            elif prev != idle:
                nxt = idle
            else:
                self.w.continue_running(p, self.t, prev[0], prev[1])
                return
        elif nxt in self.ready:
            self.ready.remove(nxt)
        if after is None:
            after = RUNNABLE if prev == idle or rng.random() < 0.4 else BLOCKED
        self.put(p, prev, 0, after)
        if prev != idle:
            self.state[prev] = after
            if after == RUNNABLE:
                self.ready.append(prev)
        self.t += 4
        self.put(p, nxt, RUNNABLE, 0)
        if nxt != idle:
            self.state[nxt] = 0
        self.current[p] = nxt

    def restore(self) -> None:
        """Back to the state of the start (every pcpu idle, every guest in its first
        state), by switches and wakes: a copy of the trace can then follow."""
        for p in range(PCPUS):
            if self.current[p] != (IDLE, p):
                self.t += 4
                self.switch(p, (IDLE, p), self.initial[self.current[p]])
        for g in self.guests:
            self.t += 4
            if self.state[g] == BLOCKED and self.initial[g] == RUNNABLE:
                self.put(0, g, BLOCKED, RUNNABLE)
                self.state[g] = RUNNABLE
                self.ready.append(g)
            elif self.state[g] == RUNNABLE and self.initial[g] == BLOCKED:
                self.switch(0, g)
                self.t += 4
                self.switch(0, (IDLE, 0), BLOCKED)


def generate(path: Path, records: int, seed: int, closed: bool = False) -> None:
    """Write a random trace with ``records`` runstate records (``closed``: ending in
    the scheduler state it starts in)."""
    with open(path, "wb") as f:
        sched = _Scheduler(f, seed)
        while sched.written < records:
            sched.step()
        if closed:
            sched.restore()
        sched.w.close()


def repeat(block: Path, path: Path, copies: int) -> None:
    """``copies`` copies of ``block``, each copy's TSCs shifted past the one before."""
    data = np.fromfile(block, np.uint8)
    walker = Walker(str(block), None, other_rows=True, chunk_rows=1 << 20)
    offsets = np.concatenate([rec.off for rec in walker.chunks()])
    header = data[offsets[:, None] + np.arange(4)].view("<u4").ravel()
    tsc_at = offsets[(header >> 31) == 1] + 4
    tscs = data[tsc_at[:, None] + np.arange(8)].view("<i8").ravel()
    span = int(tscs.max()) - int(tscs.min()) + 240_000_000
    with open(path, "wb") as f:
        for k in range(copies):
            shifted = (tscs + k * span).astype("<i8").view(np.uint8).reshape(-1, 8)
            data[tsc_at[:, None] + np.arange(8)] = shifted
            data.tofile(f)


def trace(scale: int, seed: int) -> Path:
    path = OUT / f"xen_bench_x{scale}_s{seed}.trace"
    if path.exists():
        return path
    if scale in DIRECT_SCALES:
        generate(path, RUNSTATE_RECORDS * scale, seed)
        return path
    block = OUT / f"xen_bench_block_s{seed}.trace"
    if not block.exists():
        generate(block, RUNSTATE_RECORDS, seed, closed=True)
    repeat(block, path, scale)
    return path


@dataclass
class Figures:
    """One command's runs."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    def median_wall(self) -> float:
        return statistics.median(self.wall)

    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def command_figures(commands: dict[str, list[str]], runs: int) -> dict[str, Figures]:
    """Each command ``runs`` times, the commands alternating (GNU time).

    runstate runs as an installed copy does, its bytecode cached (in a temporary
    ``PYTHONPYCACHEPREFIX`` filled by one untimed run of each command): with
    ``PYTHONDONTWRITEBYTECODE`` set, every run would compile every module first.
    """
    timer = shutil.which("time") or "/usr/bin/time"
    figures = {name: Figures() for name in commands}
    with tempfile.TemporaryDirectory(prefix="runstate-pyc-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for argv in commands.values():
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=env, check=True)
        for _ in range(runs):
            _run_each(commands, timer, env, figures)
    return figures


def _run_each(commands: dict[str, list[str]], timer: str, env: dict[str, str],
              figures: dict[str, Figures]) -> None:
    for name, argv in commands.items():
        proc = subprocess.run([timer, "-f", "%e %U %S %M", *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=True, env=env)
        wall, user, system, kib = proc.stderr.strip().splitlines()[-1].split()
        figures[name].wall.append(float(wall))
        figures[name].cpu.append(float(user) + float(system))
        figures[name].rss_mib.append(int(kib) / 1024)


def analyze_figures(path: Path, runs: int) -> Figures:
    """``analyze()`` alone, each run in a fresh process."""
    figures = Figures()
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True,
                             capture_output=True, text=True).stdout
        fig = json.loads(out)
        figures.wall.append(fig["wall"])
        figures.cpu.append(fig["cpu"])
        figures.rss_mib.append(fig["rss_mib"])
    return figures


def report(path: Path, runs: int, xenalyze: str | None) -> None:
    size_mb = path.stat().st_size / 1e6
    runstate = shutil.which("runstate") or "runstate"
    commands = {"runstate report": [runstate, "report", str(path), "--cpu-hz", "2.4G"]}
    if xenalyze:
        commands["xenalyze -s"] = [xenalyze, "-s", "--cpu-hz=2.4G", str(path)]
    commands["cat"] = ["cat", str(path)]
    commands[TINY] = [runstate, "report", str(TINY_TRACE), "--cpu-hz", "2.4G"]
    figures = command_figures(commands, runs)
    ours = figures["runstate report"]
    xen = figures.get("xenalyze -s")
    print(f"{path.name}: {size_mb:.0f} MB, median of {runs} alternating runs")
    for name, fig in figures.items():
        ratio = ""
        if name == "xenalyze -s":
            ratio = (f"   runstate {fig.median_wall() / ours.median_wall():.2f}x faster (wall), "
                     f"{fig.median_cpu() / max(ours.median_cpu(), 1e-3):.2f}x (cpu)")
        elif name == "cat":
            times = ours.median_wall() / max(fig.median_wall(), 1e-3)
            ratio = f"   runstate takes {times:.0f}x this"
        elif name == TINY and xen is not None:
            ceiling = xen.median_wall() / max(fig.median_wall(), 1e-3)
            ratio = f"   (start-up and report: runstate can be {ceiling:.2f}x faster at most)"
        rate = "" if name == TINY else f"{size_mb / max(fig.median_wall(), 1e-3):7.0f}"
        print(f"  {name:<16} wall {fig.median_wall():6.2f} s  cpu {fig.median_cpu():6.2f} s  "
              f"{rate:>7} MB/s  peak RSS {max(fig.rss_mib):5.0f} MiB{ratio}")
    alone = analyze_figures(path, runs)
    print(f"  analyze() alone  wall {alone.median_wall():6.3f} s  cpu {alone.median_cpu():6.3f} s  "
          f"peak RSS {max(alone.rss_mib):5.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scale", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--xenalyze", default=os.environ.get("XENALYZE"),
                    help="a xenalyze binary to time on the same files (bench/build_xenalyze.sh)")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    for scale in args.scale:
        report(trace(scale, args.seed), args.runs, args.xenalyze)


if __name__ == "__main__":
    main()
