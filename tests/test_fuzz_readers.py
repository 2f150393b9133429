"""Mutated inputs of every reader: a valid report or one clean error line, never
another exception, a crash, a hang, or memory beyond what the input's size explains.

Every reader in the registry is fuzzed (tests/fuzz: seeds, mutations, a forked
child per mutant under an address-space and a time limit).  This runs a few
mutants per reader and every committed regression case; CI runs
``python -m tests.fuzz`` for longer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runstate.sources.registry import READERS
from tests.fuzz.campaign import fuzz, regression_cases, run
from tests.fuzz.corpus import SEEDS, seeds_for
from tests.fuzz.runner import MEMORY_FLOOR, Mutant, judge, run_mutant

READER_NAMES = [r.FORMAT.name for r in READERS]
#: mutants per reader here (CI's fuzz step runs thousands)
MUTANTS = 12


def test_every_registered_reader_has_fuzz_seeds():
    assert READER_NAMES, "no readers registered"
    assert set(SEEDS) == set(READER_NAMES)
    for name in READER_NAMES:
        assert seeds_for(name)


@pytest.mark.parametrize("reader", READER_NAMES)
def test_every_seed_gives_a_report_with_every_option_set(reader, tmp_path):
    """Mutants start from inputs that read cleanly, so each failure is the mutation's."""
    for seed in seeds_for(reader):
        for options in seed.variants:
            outcome = run(Mutant(reader, seed.name, seed.targets[0] if seed.targets else "",
                                 (), options), tmp_path)
            assert outcome.ok and outcome.detail == "", (seed.name, options, outcome)


@pytest.mark.parametrize("reader", READER_NAMES)
def test_mutants_give_a_report_or_one_clean_error(reader, tmp_path):
    findings = fuzz(reader, tmp_path, rng_seed=20261130, count=MUTANTS)
    assert not findings, "\n".join(
        f"{f.outcome.verdict}: {f.outcome.detail[:400]}\n  {json.dumps(f.mutant.to_json())}"
        for f in findings)


@pytest.mark.parametrize("name,mutant", regression_cases(), ids=lambda v: str(v)[:40])
def test_committed_regression_case(name, mutant, tmp_path):
    outcome = run(mutant, tmp_path)
    assert outcome.ok, (name, outcome)


def test_a_header_claiming_millions_of_cpus_is_a_clean_error_in_bounded_memory(tmp_path):
    """3 bytes inserted into the tracing data of pinned2.perf.data move the nr_cpus
    feature onto other bytes: 33554432 CPUs.  That count once sized a set of every
    CPU number (4.2 GB resident for a 223 KB file)."""
    name, mutant = next((n, m) for n, m in regression_cases()
                        if n == "perf-data-nr-cpus-shifted.json")
    outcome = run(mutant, tmp_path)
    assert outcome.ok, outcome
    assert "CPU count" in outcome.detail and "byte offset" in outcome.detail, outcome.detail
    assert outcome.peak_growth < MEMORY_FLOOR, outcome


def test_judge_accepts_one_error_line_and_consistent_reports():
    assert judge(1, "", "runstate: error: /x: byte offset 4: bad\n", "/x")[0] == "ok"
    # a usage refusal the file decides: a corrupt TSC makes --interval 1ms absurd
    refusal = "runstate: error: /x: an interval of 0.001 s makes 58,640,621 intervals\n"
    assert judge(2, "", refusal, "/x")[0] == "ok"
    report = {"domains": [{"domain": "1", "lifetime_ns": 10,
                           "states": {"full_run": {"ns": 4}, "lost": {"ns": 6}}}]}
    assert judge(0, json.dumps(report), "", "/x") == ("ok", "")


@pytest.mark.parametrize("code,stdout,stderr,verdict", [
    (1, "", "runstate: error: /x: a\nrunstate: error: /x: b\n", "bad-error"),
    (1, "", "runstate: error: /elsewhere: a\n", "bad-error"),
    (1, "", "Traceback (most recent call last):\n", "exception"),
    (1, "", "runstate: internal error: KeyError\n", "exception"),
    (2, "", "usage: runstate\n", "bad-error"),
    (0, "{", "", "bad-report"),
    (0, json.dumps({"domains": [{"domain": "1", "lifetime_ns": 10,
                                 "states": {"full_run": {"ns": 4}, "lost": {"ns": 5}}}]}),
     "", "bad-report"),
])
def test_judge_catches_each_kind_of_failure(code, stdout, stderr, verdict):
    assert judge(code, stdout, stderr, "/x")[0] == verdict


def test_runner_kills_a_run_past_its_time_limit(tmp_path: Path):
    seed = seeds_for("perf-data")[0]
    outcome = run_mutant(Mutant("perf-data", seed.name, "", (), ()), seed, tmp_path,
                         time_limit=0.0)
    assert outcome.verdict == "hang"
