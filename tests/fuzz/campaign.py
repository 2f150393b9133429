"""Fuzz one reader for a number of mutants or seconds; minimize and keep what fails."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.corpus import Seed, seeds_for
from tests.fuzz.mutate import Edit, minimize, random_edits
from tests.fuzz.runner import Mutant, Outcome, materialize, run_mutant

REGRESSIONS = Path(__file__).resolve().parent / "regressions"


@dataclass(frozen=True, slots=True)
class Finding:
    mutant: Mutant
    outcome: Outcome


@dataclass(slots=True)
class Tally:
    runs: int = 0
    errors: int = 0
    reports: int = 0
    peak_growth: int = 0


def _seed(reader: str, name: str) -> Seed:
    return next(s for s in seeds_for(reader) if s.name == name)


def draw(rng: random.Random, reader: str, workdir: Path) -> Mutant:
    """A random mutant of one of the reader's seeds."""
    seed = rng.choice(seeds_for(reader))
    target = rng.choice(seed.targets) if seed.targets else ""
    pristine = seed.materialize(workdir / "seeds")
    data = (pristine / target if target else pristine).read_bytes()
    return Mutant(reader, seed.name, target, tuple(random_edits(rng, data)),
                  rng.choice(seed.variants))


def run(mutant: Mutant, workdir: Path) -> Outcome:
    return run_mutant(mutant, _seed(mutant.reader, mutant.seed), workdir)


def shrink(finding: Finding, workdir: Path) -> Finding:
    """The finding with as few and as short edits as still fail the same way."""
    verdict = finding.outcome.verdict

    def fails(edits: list[Edit]) -> bool:
        m = Mutant(finding.mutant.reader, finding.mutant.seed, finding.mutant.target,
                   tuple(edits), finding.mutant.options)
        return run(m, workdir).verdict == verdict

    edits = minimize(list(finding.mutant.edits), fails)
    m = Mutant(finding.mutant.reader, finding.mutant.seed, finding.mutant.target, tuple(edits),
               finding.mutant.options)
    return Finding(m, run(m, workdir))


def fuzz(reader: str, workdir: Path, *, rng_seed: int, count: int | None = None,
         seconds: float | None = None, stop_at_first: bool = False,
         tally: Tally | None = None) -> list[Finding]:
    """Run mutants of ``reader`` until ``count`` ran or ``seconds`` passed."""
    rng = random.Random(f"{reader}/{rng_seed}")
    tally = tally if tally is not None else Tally()
    findings: list[Finding] = []
    deadline = time.monotonic() + seconds if seconds is not None else None
    while (count is None or tally.runs < count) and \
            (deadline is None or time.monotonic() < deadline):
        mutant = draw(rng, reader, workdir)
        outcome = run(mutant, workdir)
        tally.runs += 1
        tally.peak_growth = max(tally.peak_growth, outcome.peak_growth)
        if outcome.ok:
            tally.errors += outcome.detail != ""
            tally.reports += outcome.detail == ""
            continue
        findings.append(Finding(mutant, outcome))
        if stop_at_first:
            break
    return findings


def save(finding: Finding, name: str) -> Path:
    """Write a finding as a regression case (replayed by tests/test_fuzz_readers.py)."""
    REGRESSIONS.mkdir(exist_ok=True)
    path = REGRESSIONS / f"{name}.json"
    case = {"found": f"{finding.outcome.verdict}: {finding.outcome.detail[:300]}",
            **finding.mutant.to_json()}
    path.write_text(json.dumps(case, indent=1) + "\n")
    return path


def regression_cases() -> list[tuple[str, Mutant]]:
    """Every committed regression case: (file name, mutant)."""
    return [(p.name, Mutant.from_json(json.loads(p.read_text())))
            for p in sorted(REGRESSIONS.glob("*.json"))]


__all__ = ["Finding", "Tally", "fuzz", "materialize", "regression_cases", "run", "save",
           "shrink"]
