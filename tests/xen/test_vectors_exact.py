"""Exact mode on the Xen test vectors (tests/data/xen) against their ground truth."""

from __future__ import annotations

import json

import pytest

from runstate.model.states import DomainState
from runstate.sources.registry import detect
from runstate.sources.xentrace.synth import Scenario, SynthEvent, SynthLoss
from tests.xen.helpers import XEN_DATA, cycles, run_exact
from tests.xen.model import expected

NO_LOSS = ["c01_basic", "c02_init_and_end", "c07_offline", "c08_cpu_hz_3ghz"]
WITH_LOSS = ["c04_lost_small", "c10_big"]


def _reference(case: str) -> dict:
    return json.loads((XEN_DATA / f"{case}.reference.json").read_text())


@pytest.mark.parametrize("case", NO_LOSS)
def test_exact_equals_simple_reference(case: str) -> None:
    """Without lost records, exact mode is the simple reference, cycle for cycle."""
    ref = _reference(case)["simple"]
    result = run_exact(str(XEN_DATA / f"{case}.trace"), cpu_hz=ref["cpu_hz"])
    want = {dom: {DomainState[label.upper()]: v["cycles"] for label, v in states.items()}
            for dom, states in ref["domains"].items()}
    assert cycles(result) == want
    assert result.end_ticks - result.start_ticks == ref["total_cycles"]
    idle = [d for d in result.domains if d.key == "32767"]
    assert idle and idle[0].tags == {"kind": "host-idle"}


def _scenario(case: str) -> Scenario:
    raw = json.loads((XEN_DATA / f"{case}.scenario.json").read_text())
    hz, base = raw["cpu_hz"], raw["tsc_base"]

    def tsc(t: int) -> int:
        return base + t * hz // 10**9

    sc = Scenario(hz, base, raw["n_pcpus"], {int(k): v for k, v in raw["domains"].items()}, {})
    sc.events = [SynthEvent(tsc(e["t"]), e["pcpu"], e["dom"], e["vcpu"], e["old"], e["new"],
                            e["kind"] == "continue", e["dropped"]) for e in raw["events"]]
    sc.losses = [SynthLoss(x["pcpu"], tsc(x["t"]), tsc(x["first_t"]), x["count"], x["dom"],
                           x["vcpu"]) for x in raw["lost"]]
    return sc


@pytest.mark.parametrize("case", NO_LOSS + WITH_LOSS)
def test_exact_equals_model_of_scenario(case: str) -> None:
    """Lost windows included: the independent model over the scenario's kept records."""
    sc = _scenario(case)
    result = run_exact(str(XEN_DATA / f"{case}.trace"), cpu_hz=sc.cpu_hz)
    assert cycles(result) == expected(sc)


@pytest.mark.parametrize("case", NO_LOSS + WITH_LOSS)
def test_vectors_are_detected_as_xentrace(case: str) -> None:
    path = XEN_DATA / f"{case}.trace"
    assert detect(str(path), path.read_bytes()[:65536]).FORMAT.name == "xentrace"
