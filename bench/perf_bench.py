"""perf.data reading speed: ``perf script`` printing a file vs runstate's whole report pipeline.

Records (or reuses) ``bench/out/pipe.perf.data``: the sched tracepoints during
``perf bench sched pipe`` pinned to one CPU (about 1.5 M events).  Then, in the
same run, times ``perf script`` printing it to /dev/null and ``runstate``'s
analysis of it (two passes, as ``runstate report`` does), each in a child
process whose peak RSS is read from ``getrusage(RUSAGE_CHILDREN)``.

Usage: python bench/perf_bench.py [--loops N] [--repeat K] [--rerecord]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
DATA = OUT / "pipe.perf.data"
EVENTS = ("sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new,"
          "sched:sched_process_exit,sched:sched_process_fork")

ANALYZE = """
import sys
from runstate.analysis.pipeline import analyze
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source
src = open_source(sys.argv[1], ReadOptions())
result = analyze(src)
print(len(result.domains), sum(src.info.anomalies.values()))
"""


def record(loops: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["perf", "record", "-q", "-k", "mono", "-e", EVENTS, "-a", "-o", str(DATA),
                    "--", "taskset", "-c", "1", "perf", "bench", "sched", "pipe", "-l",
                    str(loops)], check=True, stdout=subprocess.DEVNULL)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a child process."""
    pid_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - pid_start
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed with status {status}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loops", type=int, default=450_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rerecord", action="store_true")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed")
    if args.rerecord or not DATA.exists():
        record(args.loops)
    size = DATA.stat().st_size / 2**20
    print(f"file {DATA} {size:.1f} MiB")
    perf, ours = [], []
    for _ in range(args.repeat):
        perf.append(timed(["perf", "script", "-i", str(DATA), "--ns"]))
        ours.append(timed([sys.executable, "-c", ANALYZE, str(DATA)]))
    p = min(w for w, _ in perf)
    o = min(w for w, _ in ours)
    print(f"perf script:      {p:6.2f} s  peak RSS {max(r for _, r in perf):6.1f} MiB")
    print(f"runstate analyze: {o:6.2f} s  peak RSS {max(r for _, r in ours):6.1f} MiB")
    print(f"speed-up: {p / o:.2f}x (best of {args.repeat})")


if __name__ == "__main__":
    main()
