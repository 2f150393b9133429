"""Benchmark: ``--semantics xenalyze`` (the xenalyze compat mode) on the xentrace bench traces.

Uses the traces of ``bench/xentrace_bench.py`` (bench/out/xen_bench_x{1,4}_s1.trace,
41 MB and 164 MB; written here with the same generator if missing) and, per
run, a fresh child process that does what ``runstate report TRACE --semantics
xenalyze --cpu-hz 2.4G`` does: ``run_xenalyze`` and the xenalyze-style text.
Reported: the child's wall time of that work (median and min over runs), the
child's whole wall time including interpreter start and imports, and the
child's peak RSS (``ru_maxrss`` from ``wait4``).  Peak RSS should not grow
with the file size.

    python bench/xenalyze_bench.py [--runs 3] [--scale 1 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent
OUT = HERE / "out"

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from runstate.analysis.xenalyze import run_xenalyze
from runstate.report.xenalyze_text import render_xenalyze
from runstate.sources.base import ReadOptions
t1 = time.perf_counter()
text = render_xenalyze(run_xenalyze(sys.argv[1], None, ReadOptions(cpu_hz=2.4e9)))
wall = time.perf_counter() - t1
print(json.dumps({"wall": wall, "imports": t1 - t0, "lines": len(text.splitlines())}))
"""


def _xentrace_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xentrace_bench", HERE / "xentrace_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_child(path: Path) -> dict[str, float]:
    """One child run: its own timing, its total wall time and its peak RSS (MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"child failed on {path} (exit {proc.returncode})")
    fig = json.loads(out)
    return {"wall": fig["wall"], "total": total, "rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    for scale in args.scale:
        path = OUT / f"xen_bench_x{scale}_s{args.seed}.trace"
        if not path.exists():
            bench = _xentrace_bench()
            bench.generate(path, bench.RUNSTATE_RECORDS * scale, args.seed)
        runs = [run_child(path) for _ in range(args.runs)]
        walls = [r["wall"] for r in runs]
        print(f"x{scale}: {path.stat().st_size / 1e6:.1f} MB  xenalyze mode median "
              f"{statistics.median(walls):.3f} s (min {min(walls):.3f}; whole child "
              f"{statistics.median(r['total'] for r in runs):.3f} s)  peak RSS "
              f"{max(r['rss_mib'] for r in runs):.0f} MiB")


if __name__ == "__main__":
    main()
