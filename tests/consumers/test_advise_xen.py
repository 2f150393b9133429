"""``runstate advise`` on the Xen test vectors against their reference figures: each
domain's findings are what the documented bounds say of the reference state shares.

The reference is the vectors' ``simple`` one (each vCPU from its first record, in the old
state that record gives), which exact mode equals on traces without lost records."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DATA

VECTORS = DATA / "xen"
IDLE_DOMAIN = "32767"

#: the documented bounds (low, medium, high, critical), applied here to the true cycles
FULL_RUN = (0.25, 0.50, 0.80, 0.90)
CONTENTION = (0.05, 0.10, 0.25, 0.50)
LEVELS = ("low", "medium", "high", "critical")
RULES = {
    "more_vcpus": (("full_run",), FULL_RUN),
    "host_overcommitted": (("full_contention", "partial_contention"), CONTENTION),
    "fewer_vcpus": (("concurrency_hazard",), CONTENTION),
}


def _vectors():
    if not VECTORS.is_dir():
        return []
    return sorted(p for p in VECTORS.glob("*.trace")
                  if (VECTORS / (p.stem + ".reference.json")).exists())


def _expected(states: dict[str, dict]) -> dict[str, tuple[str, float]]:
    life = sum(s["cycles"] for s in states.values())
    out = {}
    for rule, (names, bounds) in RULES.items():
        share = sum(states.get(n, {}).get("cycles", 0) for n in names) / life
        reached = [level for level, bound in zip(LEVELS, bounds, strict=True) if share >= bound]
        if reached:
            out[rule] = (reached[-1], share)
    return out


@pytest.mark.parametrize("trace", _vectors(), ids=lambda p: p.stem)
def test_findings_follow_the_reference_shares(run_cli, trace):
    truth = json.loads((VECTORS / (trace.stem + ".reference.json")).read_text())["simple"]
    result = run_cli("advise", str(trace), "--cpu-hz", str(truth["cpu_hz"]), "--format", "json")
    assert result.code == 0, result.err
    advice = {d["domain"]: d for d in json.loads(result.out)["domains"]}
    for domain, states in truth["domains"].items():
        if domain == IDLE_DOMAIN:
            continue  # host idleness, not a VM
        got = advice[domain]
        if got["lost_share"] > 0:
            continue  # the reference ignores lost records
        found = {f["rule"]: f for f in got["findings"]}
        expected = _expected(states)
        assert set(found) == set(expected), (domain, found, expected)
        for rule, (level, share) in expected.items():
            assert found[rule]["share"] == pytest.approx(share, abs=2e-6)
            reached = LEVELS.index(found[rule]["level"])
            if rule == "fewer_vcpus":  # long episodes may raise it by one
                assert reached - LEVELS.index(level) in (0, 1)
                raised = found[rule]["evidence"]["episode_p95_ns"] > 3_000_000
                assert reached == min(LEVELS.index(level) + raised, 3)
            else:
                assert reached == LEVELS.index(level)
