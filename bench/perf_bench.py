"""perf.data reading speed: ``runstate report`` against perf's own readers of the same file.

Records (or reuses) ``bench/out/pipe.perf.data``: the sched tracepoints during
``perf bench sched pipe`` pinned to one CPU (about 1.4 M events for the
default 450 000 loops).  Then, alternating in the same run, it times whole
processes: ``runstate report FILE``, ``perf sched timehist -s -i FILE``,
``perf script -i FILE`` (output to /dev/null) and ``cat FILE`` (the page
cache's speed), each under GNU time for wall seconds, CPU seconds (user +
sys) and peak RSS.  Medians over the runs are printed with MB/s and the
ratios of perf's times to runstate's.  A second line times ``analyze()``
alone inside a child (no start-up, no report), as the pipeline runs it.

runstate runs as an installed copy does, with its modules' bytecode cached
(in a temporary ``PYTHONPYCACHEPREFIX``, filled by one untimed run): with
``PYTHONDONTWRITEBYTECODE`` set, every run would compile every module first.
``--group`` is passed to runstate (a recording made while a QEMU guest ran is
grouped per VM by default, which leaves most threads out).

Usage: python bench/perf_bench.py [--loops N] [--repeat K] [--rerecord] [--file PATH]
                                  [--group G]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
DATA = OUT / "pipe.perf.data"
EVENTS = ("sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new,"
          "sched:sched_process_exit,sched:sched_process_fork")
GNU_TIME = "/usr/bin/time"

ANALYZE = """
import sys, time
from runstate.analysis.pipeline import analyze
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source
wall, cpu = time.perf_counter(), time.process_time()
src = open_source(sys.argv[1], ReadOptions(group=sys.argv[2] or None))
result = analyze(src)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def record(path: Path, loops: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["perf", "record", "-q", "-k", "mono", "-e", EVENTS, "-a", "-o", str(path),
                    "--", "taskset", "-c", "1", "perf", "bench", "sched", "pipe", "-l",
                    str(loops)], check=True, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    rss_mib: float


def python_env(cache: str) -> dict[str, str]:
    """The environment of an installed runstate: bytecode cached (in ``cache``), one BLAS
    thread (as the command asks for; analyze_only runs without the command)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """One run of ``cmd`` under GNU time, its output discarded."""
    with tempfile.NamedTemporaryFile("r") as report:
        subprocess.run([GNU_TIME, "-o", report.name, "-f", "%e %U %S %M", *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wall, user, system, rss_kib = report.read().split()[-4:]
    return Run(float(wall), float(user) + float(system), int(rss_kib) / 1024)


def analyze_only(path: Path, group: str | None, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of analyze() alone, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", ANALYZE, str(path), group or ""], check=True,
                         capture_output=True, text=True, env=env).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loops", type=int, default=450_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rerecord", action="store_true")
    parser.add_argument("--file", type=Path, default=DATA)
    parser.add_argument("--group", help="passed to runstate report (--group)")
    args = parser.parse_args()
    for tool in ("perf", GNU_TIME):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    path = args.file
    if args.rerecord or not path.exists():
        record(path, args.loops)
    size_mb = path.stat().st_size / 1e6
    commands = {
        "runstate report": ["runstate", "report", str(path),
                            *(["--group", args.group] if args.group else [])],
        "perf sched timehist": ["perf", "sched", "timehist", "-s", "-i", str(path)],
        "perf script": ["perf", "script", "-i", str(path)],
        "cat": ["cat", str(path)],
    }
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    analyses = []
    with tempfile.TemporaryDirectory() as cache:
        env = python_env(cache)
        timed(commands["runstate report"], env)  # fills the bytecode cache
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                runs[name].append(timed(cmd, env if name.startswith("runstate") else None))
            analyses.append(analyze_only(path, args.group, env))
    print(f"file {path} {size_mb:.1f} MB, medians of {args.repeat} alternating runs")
    median = {name: statistics.median(r.wall for r in rs) for name, rs in runs.items()}
    for name, rs in runs.items():
        cpu = statistics.median(r.cpu for r in rs)
        rss = max(r.rss_mib for r in rs)
        print(f"{name:20s} {median[name]:6.3f} s wall  {cpu:6.3f} s cpu  "
              f"{size_mb / median[name]:7.0f} MB/s  peak RSS {rss:6.1f} MiB")
    ours = median["runstate report"]
    for name in ("perf sched timehist", "perf script"):
        print(f"{name} / runstate report: {median[name] / ours:.2f}x")
    wall = statistics.median(w for w, _ in analyses)
    cpu = statistics.median(c for _, c in analyses)
    print(f"analyze() alone: {wall:.3f} s wall, {cpu:.3f} s cpu ({size_mb / wall:.0f} MB/s)")


if __name__ == "__main__":
    main()
