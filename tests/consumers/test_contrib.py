"""contrib/: the committed rules and dashboard are the generated ones, promtool accepts the
rules, and the hand-written promtool unit tests show every alert firing at its level."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from runstate.model.states import DomainState

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
PROMETHEUS = CONTRIB / "prometheus"


def _generate_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("contrib_generate", CONTRIB / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_the_generated_ones():
    generate = _generate_module()
    for name, produce in generate.GENERATED.items():
        assert (CONTRIB / name).read_text() == produce(), \
            f"contrib/{name} is stale: python contrib/generate.py"


def test_dashboard_has_a_stacked_state_panel_per_vm_and_vcpu_run_ready():
    board = json.loads((CONTRIB / "grafana" / "runstate-dashboard.json").read_text())
    panels = {p["title"]: p for p in board["panels"]}
    states = panels["domain runstates (share of lifetime)"]
    assert states["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    coloured = {o["matcher"]["options"] for o in states["fieldConfig"]["overrides"]}
    assert coloured == {s.label for s in DomainState}
    assert "runstate_domain_state_seconds_total" in states["targets"][0]["expr"]
    row = next(p for p in board["panels"] if p["type"] == "row")
    assert row["repeat"] == "domain"
    vcpus = panels["per vCPU: run and ready (runnable)"]
    assert 'state=~"running|runnable"' in vcpus["targets"][0]["expr"]
    assert any("runstate_finding" in t["expr"] for p in board["panels"]
               for t in p.get("targets", []))


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def test_promtool_accepts_the_rules():
    result = subprocess.run([_promtool(), "check", "rules", "alerts.yml", "recording.yml"],
                            cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout  # 3 rules x 4 levels
    assert "SUCCESS: 7 rules found" in result.stdout


def test_promtool_unit_tests_fire_each_alert_at_its_level():
    result = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"],
                            cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_wrong_bound(tmp_path):
    # the unit tests are not vacuous: a low bound moved from 25 % to 35 % fails them
    for name in ("alerts.yml", "recording.yml", "alerts_test.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    alerts = tmp_path / "alerts.yml"
    alerts.write_text(alerts.read_text().replace(") >= 0.25 < 0.5\n", ") >= 0.35 < 0.5\n", 1))
    result = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "fr-low" in result.stdout + result.stderr


def test_rules_for_own_thresholds_use_them_and_pass_promtool(run_cli, tmp_path):
    own = tmp_path / "t.toml"
    own.write_text('lost_max = 0.2\n[full_run]\nhigh = 0.85\n[contention]\nlow = "3%"\n')
    result = run_cli("advise", "--thresholds", str(own), "--emit-alert-rules")
    assert result.code == 0
    rules = tmp_path / "alerts.yml"
    rules.write_text(result.out)
    assert ") >= 0.85 < 0.9\n" in result.out and ") >= 0.5 < 0.85\n" in result.out
    assert ") >= 0.03 < 0.1\n" in result.out and ") <= 0.2\n" in result.out
    check = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
