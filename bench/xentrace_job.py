"""Benchmark: the xentrace fast path's C job alone, on a file mapped as a report maps it.

A whole-trace report of a xentrace file is, after start-up, the C job
(``sources/xentrace/_job.c``): the first pass over the mapped file, then the
second, which merges the kept rows and accounts them by the engine's rules.
This times the two passes apart (wall, the job's thread alone or, with
``--parts``, with the caller taking parts as a report does once it waits),
medians of ``--runs`` runs, so that a change to the job is measured without
the command's start-up around it.

Usage: python bench/xentrace_job.py [FILE] [--runs N] [--parts N]
(FILE defaults to the 41 MB trace ``bench/xentrace_bench.py`` writes.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from runstate.sources.xentrace import _job
from runstate.sources.xentrace.prefetch import KEEP_ROWS
from runstate.sources.xentrace.walk import map_file

DEFAULT = Path(__file__).resolve().parent / "out" / "xen_bench_x1_s1.trace"


def run_once(path: Path, parts: int) -> tuple[float, float, int]:
    """(first pass ms, second pass ms, rows accounted) of one job on ``path``."""
    data = map_file(str(path))
    job = _job.Job(data, 0, True)
    try:
        begin = time.perf_counter()
        job.start(1, True, parts, KEEP_ROWS, len(data) + 1)
        if job.scanned() != _job.SCAN_DONE:
            raise SystemExit(f"{path}: the fast path does not read this file")
        scanned = time.perf_counter()
        rows = job.account()
        done = time.perf_counter()
    finally:
        job.close()
    return (scanned - begin) * 1e3, (done - scanned) * 1e3, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--parts", type=int, default=1,
                        help="parts of the second pass (the caller takes some once it waits)")
    args = parser.parse_args()
    if not args.file.exists():
        raise SystemExit(f"{args.file}: no such file (python bench/xentrace_bench.py writes it)")
    runs = [run_once(args.file, args.parts) for _ in range(args.runs)]
    first = statistics.median(r[0] for r in runs)
    second = statistics.median(r[1] for r in runs)
    total = statistics.median(r[0] + r[1] for r in runs)
    size = args.file.stat().st_size
    print(f"{args.file.name}: {size / 1e6:.0f} MB, {runs[0][2]} rows accounted, "
          f"medians of {args.runs} runs, {args.parts} part(s)")
    print(f"  first pass {first:6.1f} ms   second pass {second:6.1f} ms   "
          f"job {total:6.1f} ms ({size / total / 1e3:.0f} MB/s)")


if __name__ == "__main__":
    main()
