"""Fuzz the readers from the command line.

    python -m tests.fuzz                         # every reader, 20 s each
    python -m tests.fuzz --reader perf-data --seconds 600
    python -m tests.fuzz --seconds 30 --save     # keep minimized failures as regressions

Exit status 1 if any mutant failed; each failure is printed minimized, as the
JSON of a regression case.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from runstate.sources.registry import READERS
from tests.fuzz.campaign import Tally, fuzz, save, shrink


def main(argv: list[str] | None = None) -> int:
    names = [r.FORMAT.name for r in READERS]
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", action="append", choices=names,
                   help="reader to fuzz (repeatable; default: all)")
    p.add_argument("--seconds", type=float, default=20.0, help="time per reader")
    p.add_argument("--seed", type=int, default=int(time.time()),
                   help="random seed (default: the time; printed)")
    p.add_argument("--save", action="store_true",
                   help="write minimized failures to tests/fuzz/regressions/")
    args = p.parse_args(argv)
    failed = 0
    print(f"seed {args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="runstate-fuzz-") as tmp:
        for reader in args.reader or names:
            tally = Tally()
            workdir = Path(tmp) / reader
            workdir.mkdir()
            findings = fuzz(reader, workdir, rng_seed=args.seed, seconds=args.seconds,
                            tally=tally)
            print(f"{reader}: {tally.runs} mutants, {tally.reports} reports, "
                  f"{tally.errors} clean errors, {len(findings)} failures, "
                  f"peak memory growth {tally.peak_growth >> 20} MiB", flush=True)
            for i, finding in enumerate(findings[:5]):
                print(json.dumps({"verdict": finding.outcome.verdict,
                                  "detail": finding.outcome.detail[:500],
                                  **finding.mutant.to_json()}), flush=True)
                small = shrink(finding, workdir)
                if small.outcome.ok:
                    print("  (does not fail again: load-dependent or flaky)", flush=True)
                    continue
                print("  minimized: " + json.dumps({"verdict": small.outcome.verdict,
                                                    **small.mutant.to_json()}), flush=True)
                if args.save:
                    print(f"  saved {save(small, f'{reader}-{args.seed}-{i}')}")
            failed += len(findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
