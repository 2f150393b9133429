"""``--semantics xenalyze --format json`` gives xenalyze's cycles and counts."""

from __future__ import annotations

import json

import pytest

from tests.conftest import XEN_DATA as VECTORS


@pytest.mark.parametrize("case", ["c01_basic", "c02_init_and_end", "c04_lost_small",
                                  "c07_offline"])
def test_json_equals_the_recorded_xenalyze_figures(run_cli, case):
    trace = VECTORS / f"{case}.trace"
    reference = json.loads((VECTORS / f"{case}.reference.json").read_text())
    want_doc = reference["xenalyze_emulation"]
    result = run_cli("report", str(trace), "--cpu-hz", str(want_doc["cpu_hz"]),
                     "--semantics", "xenalyze", "--format", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    got = {d["domain"]: {s: (v["cycles"], v["count"]) for s, v in d["states"].items()}
           for d in doc["domains"]}
    want = {dom: {s: (v["cycles"], v["count"]) for s, v in states.items()}
            for dom, states in want_doc["domains"].items()}
    assert got == want
