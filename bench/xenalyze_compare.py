"""Cross-check ``--semantics xenalyze`` against a real xenalyze binary on random traces.

For each seed a random scheduler-consistent xentrace file is generated
(1-8 pcpus, 1-5 domains, lost records in about half, wrap records, offline
vCPUs, varied window layouts), then ``xenalyze -s --cpu-hz=1`` and runstate's
emulation print their summaries and the domain ``Runstates:`` lines are
compared on count and cycles (with --cpu-hz=1 the seconds column is exact
cycles; percentiles are not compared).  Traces on which xenalyze itself exits
with an error are counted and skipped.  The binary is not part of the
project: build it from Xen's tools/xentrace and give its path.

    python bench/xenalyze_compare.py --xenalyze PATH [--seeds 600] [--start 1] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from runstate.analysis.xenalyze import run_xenalyze
from runstate.errors import RunstateError
from runstate.report.xenalyze_text import render_xenalyze
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.synth import SynthConfig, generate, write

_STATES = ("blocked", "partial run", "full run", "partial contention", "concurrency_hazard",
           "full_contention", "lost")
_LINE = re.compile(r"^\s*(" + "|".join(map(re.escape, _STATES)) + r"):\s+(\d+)\s+([\d.]+)s")
_DOMAIN = re.compile(r"^\|-- Domain (\d+) --\|")


def runstate_lines(text: str) -> dict[tuple[int, str], tuple[int, int]]:
    """``{(domain, state): (count, cycles)}`` from a summary printed with --cpu-hz=1."""
    out: dict[tuple[int, str], tuple[int, int]] = {}
    domain = None
    for line in text.splitlines():
        if (m := _DOMAIN.match(line)) is not None:
            domain = int(m.group(1))
        elif domain is not None and (m := _LINE.match(line)) is not None:
            out[(domain, m.group(1))] = (int(m.group(2)), round(float(m.group(3))))
        elif line and not line.startswith(" "):
            domain = None
    return out


def random_trace(seed: int, path: Path) -> None:
    rng = random.Random(10_000 + seed)
    config = SynthConfig(
        n_pcpus=rng.randint(1, 8),
        domains=tuple((d, rng.randint(1, 6)) for d in range(rng.randint(1, 5))),
        steps=rng.choice((30, 100, 200, 400, 800)),
        gap=rng.choice((2_000, 10_000, 40_000, 200_000)),
        loss=0.0 if rng.random() < 0.5 else rng.choice((0.1, 0.2, 0.4, 0.7)),
        wrap=0.0 if rng.random() < 0.5 else rng.choice((0.02, 0.05, 0.15)),
        offline=rng.choice((0.0, 0.05, 0.05, 0.2, 0.5)),
        cpu_hz=rng.choice((2.4e9, 3.0e9)))
    with open(path, "wb") as f:
        write(generate(seed, config), f, seed=seed,
              poll=rng.choice((100_000, 400_000, 2_000_000)),
              high_water=rng.choice((256, 2048, 8192)), other_every=rng.choice((0, 0, 0, 5)),
              early_cpu=rng.random() < 0.2)


def compare(args: tuple[int, str, str]) -> tuple[int, str, int]:
    seed, xenalyze, directory = args
    path = Path(directory) / f"s{seed}.trace"
    random_trace(seed, path)
    real = subprocess.run([xenalyze, "-s", "--cpu-hz=1", str(path)], capture_output=True,
                          text=True)
    if real.returncode != 0:
        return seed, "xenalyze_error", 0
    try:
        ours = render_xenalyze(run_xenalyze(str(path), None, ReadOptions(cpu_hz=1.0)))
    except RunstateError:
        return seed, "runstate_error", 0
    expected = runstate_lines(real.stdout)
    same = expected == runstate_lines(ours)
    if same:
        path.unlink()
    return seed, "match" if same else "mismatch", len(expected)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--xenalyze", required=True, help="path of a xenalyze binary")
    ap.add_argument("--seeds", type=int, default=600)
    ap.add_argument("--start", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    directory = tempfile.mkdtemp(prefix="xenalyze-compare-")
    work = [(s, args.xenalyze, directory) for s in range(args.start, args.start + args.seeds)]
    by_status: dict[str, list[int]] = {}
    lines = 0
    with ProcessPoolExecutor(args.jobs) as pool:
        for seed, status, compared in pool.map(compare, work):
            by_status.setdefault(status, []).append(seed)
            lines += compared
    counts = {k: len(v) for k, v in sorted(by_status.items())}
    print(json.dumps({"counts": counts, "runstate_lines_compared": lines,
                      "mismatch_seeds": by_status.get("mismatch", []),
                      "runstate_error_seeds": by_status.get("runstate_error", []),
                      "xenalyze_error_seeds": by_status.get("xenalyze_error", []),
                      "kept_traces": directory}, indent=1))


if __name__ == "__main__":
    main()
