"""Start-up time of the ``runstate`` command: what a user waits for before any work.

Runs each command N times, alternating between them so that a burst of load on
the machine spreads over all of them, and prints the median wall time and the
median CPU time (user + sys of the child) in ms.  ``python -c pass`` and
``python -c "import numpy"`` are the floor and the price of the array library,
for comparison: ``--version`` and ``--help`` should cost little more than the
first, and a small report little more than the second.  numpy as the command
loads it (one BLAS thread) is timed twice: ending as usual and ending at once with
``os._exit``; the difference is the interpreter's teardown with numpy loaded, which
the offline commands skip.

``--src DIR`` times the ``runstate`` package in DIR instead of the installed
one (e.g. an export of an older commit, to compare), started the way the
console script starts it; without it the console script itself is timed.

Usage: python bench/startup_bench.py [--runs N] [--src DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL_TRACE = ROOT / "tests" / "data" / "xen" / "c01_basic.trace"


#: what the console script runs, for a package found through PYTHONPATH
ENTRY = "import sys; from runstate.cli.main import entry; sys.argv[0] = 'runstate'; entry()"


def runstate_command(src: str | None) -> list[str]:
    """The installed console script, as a user starts it (else ``python -m runstate``),
    or the same entry point from the package in ``src``."""
    if src is not None:
        return [sys.executable, "-c", ENTRY]
    exe = shutil.which("runstate")
    return [exe] if exe else [sys.executable, "-m", "runstate"]


#: numpy imported as the runstate command imports it
ONE_THREAD_NUMPY = "import os; os.environ['OPENBLAS_NUM_THREADS'] = '1'; import numpy"


def commands(src: str | None) -> dict[str, list[str]]:
    rs = runstate_command(src)
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        # as runstate loads it (one BLAS thread), then ending with and without the
        # interpreter's teardown, which the offline commands skip (cli/main.py entry)
        "numpy, one BLAS thread": [sys.executable, "-c", ONE_THREAD_NUMPY],
        "numpy, one BLAS thread, os._exit": [sys.executable, "-c",
                                             ONE_THREAD_NUMPY + "; os._exit(0)"],
        "runstate --version": [*rs, "--version"],
        "runstate --help": [*rs, "--help"],
        "runstate report --help": [*rs, "report", "--help"],
        "runstate report SMALL.trace --format json": [
            *rs, "report", str(SMALL_TRACE), "--cpu-hz", "2.4G", "--format", "json"],
    }


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one run of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command")
    parser.add_argument("--src", metavar="DIR",
                        help="time the runstate package in DIR (a src directory)")
    args = parser.parse_args()
    if args.src is not None:
        os.environ["PYTHONPATH"] = os.path.abspath(args.src)
    table = commands(args.src)
    walls: dict[str, list[float]] = {name: [] for name in table}
    cpus: dict[str, list[float]] = {name: [] for name in table}
    for cmd in table.values():  # warm the page cache and the .pyc files
        timed(cmd)
    for _ in range(args.runs):
        for name, cmd in table.items():
            wall, cpu = timed(cmd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    width = max(len(name) for name in table)
    print(f"{'command':<{width}}  wall ms  cpu ms   (medians of {args.runs} runs)")
    for name in table:
        print(f"{name:<{width}}  {1e3 * statistics.median(walls[name]):7.1f}  "
              f"{1e3 * statistics.median(cpus[name]):6.1f}")


if __name__ == "__main__":
    main()
