"""``runstate advise`` on traces: committed recordings and recordings made here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.consumers.conftest import record

BUSY4 = DATA / "linux" / "busy4.perf.data"
CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


def _advice(run_cli, *argv: str) -> dict:
    result = run_cli("advise", *argv, "--format", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["schema"] == "runstate.advice/1"
    return doc


def _report(run_cli, *argv: str) -> dict:
    result = run_cli("report", *argv, "--format", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _domain(doc: dict, key: str) -> dict:
    [match] = [d for d in doc["domains"] if d["domain"] == key]
    return match


def _rules(domain: dict) -> dict[str, str]:
    return {f["rule"]: f["level"] for f in domain["findings"]}


def test_four_spinners_on_two_cores_need_fewer_vcpus(run_cli):
    # busy4: 4 spinning threads of one process on this 2-core machine
    advice = _advice(run_cli, str(BUSY4))
    report = _report(run_cli, str(BUSY4))
    key = "proc:4420"
    hazard = _domain(report, key)["states"]["concurrency_hazard"]
    [finding] = _domain(advice, key)["findings"]
    assert finding["rule"] == "fewer_vcpus"
    assert finding["share"] == pytest.approx(hazard["share"], abs=1e-6)
    assert finding["evidence"]["episode_p95_ns"] == hazard["p95_ns"]
    # p95 far beyond the 3 ms slice: raised to (at most) critical
    assert hazard["p95_ns"] > 3_000_000 and finding["level"] == "critical"
    # the idle kernel threads of the same trace raise nothing
    quiet = [d for d in advice["domains"] if d["domain"] != key and not d["findings"]]
    assert len(quiet) >= 8


def test_intervals_and_fail_on(run_cli):
    doc = _advice(run_cli, str(BUSY4), "--interval", "100ms")
    evidence = _domain(doc, "proc:4420")["findings"][0]["evidence"]
    assert evidence["intervals"] == 11  # 1.005 s in 100 ms steps
    assert evidence["intervals_fired"] >= 9 and evidence["pattern"] == "sustained"
    assert run_cli("advise", str(BUSY4), "--fail-on", "critical").code == 3
    text = run_cli("advise", str(BUSY4), "--fail-on", "high")
    assert text.code == 3 and "fewer_vcpus" in text.out and "do:" in text.out


def test_thresholds_file_changes_the_level(run_cli, tmp_path):
    lenient = tmp_path / "t.toml"
    lenient.write_text('hazard_slice_ms = 1000\n[concurrency_hazard]\ncritical = "100%"\n')
    doc = _advice(run_cli, str(BUSY4), "--thresholds", str(lenient))
    assert _rules(_domain(doc, "proc:4420")) == {"fewer_vcpus": "high"}
    assert doc["thresholds"]["concurrency_hazard"]["critical"] == 1.0
    assert run_cli("advise", str(BUSY4), "--thresholds", str(lenient),
                   "--fail-on", "critical").code == 0


def test_errors_are_one_line(run_cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[full_run]\nhigh = 2\n")
    result = run_cli("advise", str(BUSY4), "--thresholds", str(bad))
    assert result.code == 2 and result.err.count("\n") == 1
    assert result.err.startswith(f"runstate: error: --thresholds: {bad}: full_run.high")
    junk = tmp_path / "junk.csv"
    junk.write_text("time,member\nnot a number,1\n")
    result = run_cli("advise", str(junk))
    assert result.code == 1 and result.err.count("\n") == 1 and "Traceback" not in result.err
    assert run_cli("advise", "--fail-on", "severe", str(BUSY4)).code == 2
    assert run_cli("advise", str(BUSY4), "--duration", "1").code == 2


def test_emitted_alert_rules_are_the_committed_ones(run_cli):
    result = run_cli("advise", "--emit-alert-rules")
    assert result.code == 0
    assert result.out == (CONTRIB / "prometheus" / "alerts.yml").read_text()


# --- recordings of this machine, made by the test -------------------------------------

@pytest.mark.live
def test_recorded_four_busy_threads_on_two_cores(root, start_load, tmp_path):
    load = start_load(4, 20)
    rec = record(load.pid, 1.5, tmp_path / "busy4.rec")
    doc = _run_json(rec, load.group_file(tmp_path / "g.json"))
    rules = _rules(_domain(doc, "group:load"))
    # 4 members can never all run on 2 cores: no full_run, so no more_vcpus
    assert "more_vcpus" not in rules
    assert rules.get("fewer_vcpus") in ("high", "critical")


@pytest.mark.live
def test_recorded_two_busy_threads_on_two_cores(root, start_load, tmp_path):
    # no naps: on some kernels the tracer drops most idle->task switches of a napping
    # task, and the recording then rightly shows its time as lost (no finding)
    load = start_load(2, 20, sleep_us=0, favoured=True)
    rec = record(load.pid, 1.5, tmp_path / "busy2.rec")
    groups = load.group_file(tmp_path / "g.json")
    waited = _waited_share(rec, groups)
    if waited > 0.1:
        pytest.skip(f"the cores are not idle: the threads waited {waited:.0%} of the time "
                    "for a CPU (other load on this machine)")
    findings = {f["rule"]: f for f in _domain(_run_json(rec, groups), "group:load")["findings"]}
    assert "more_vcpus" in findings
    # both members running is what this domain does most
    hazard = findings.get("fewer_vcpus", {"share": 0.0})["share"]
    assert findings["more_vcpus"]["share"] > max(0.5, hazard)


def _waited_share(rec: Path, groups: Path) -> float:
    """Mean share of the time the domain's members were runnable (waiting for a CPU)."""
    import io

    from runstate.cli.main import main

    out = io.StringIO()
    assert main(["report", str(rec), "--group", str(groups), "--format", "json"], out,
                io.StringIO()) == 0
    [domain] = [d for d in json.loads(out.getvalue())["domains"] if d["domain"] == "group:load"]
    totals = [sum(s["ns"] for s in m["states"].values()) for m in domain["members"]]
    waits = [m["states"]["runnable"]["ns"] for m in domain["members"]]
    return sum(waits) / sum(totals)


@pytest.mark.live
def test_recorded_idle_threads_raise_nothing(root, start_load, tmp_path):
    # 1 ms of work every 200 ms, at nice -20 so that other load on this machine does not
    # keep the woken threads waiting
    load = start_load(2, 20, sleep_us=200_000, favoured=True)
    rec = record(load.pid, 1.5, tmp_path / "idle.rec")
    doc = _run_json(rec, load.group_file(tmp_path / "g.json"))
    assert _domain(doc, "group:load")["findings"] == []


def _run_json(rec: Path, groups: Path) -> dict:
    import io

    from runstate.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["advise", str(rec), "--group", str(groups), "--format", "json"], out, err)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())
