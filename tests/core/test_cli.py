"""The CLI end to end, in process: golden outputs, exit codes, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import DATA

TWO_VMS = str(DATA / "core" / "two_vms.csv")


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_golden_outputs(run_cli, golden, fmt):
    result = run_cli("report", TWO_VMS, "--format", fmt, "--interval", "5us")
    assert result.code == 0, result.err
    text = result.out.replace(TWO_VMS, "two_vms.csv")
    golden(f"two_vms.{fmt}", text)


def test_hand_computed_figures(run_cli):
    """The two_vms case worked out by hand (window 1000..20000 ns)."""
    doc = json.loads(run_cli("report", TWO_VMS, "--format", "json").out)
    web, db = doc["domains"]
    # web: hazard 1000-5000, full_run 5000-9000, partial_run 9000-13000, lost 13000-15000,
    # after the loss vcpu0's next record reveals running (until 17000), vcpu1 never
    # reappears -> unknown -> lost 15000-20000
    assert web["name"] == "web"
    assert {k: v["ns"] for k, v in web["states"].items() if v["ns"]} == {
        "concurrency_hazard": 4000, "full_run": 4000, "partial_run": 4000, "lost": 7000}
    assert web["lifetime_ns"] == 19000
    # db: blocked 1000-9500, full_run 9500-12000, blocked 12000-13000, lost 13000-15000,
    # blocked 15000-16000 (revealed by the next record), full_contention 16000-20000
    assert {k: v["ns"] for k, v in db["states"].items() if v["ns"]} == {
        "blocked": 10500, "full_run": 2500, "lost": 2000, "full_contention": 4000}
    assert db["states"]["blocked"]["count"] == 3
    assert db["lost_intervals"] == 1


def _file_span(path: str) -> tuple[int, int]:
    """First and last time_ns of a generic CSV file, read without runstate."""
    with open(path, newline="") as f:
        times = [int(row["time_ns"]) for row in csv.DictReader(f)]
    return min(times), max(times)


def test_conservation_in_every_output(run_cli):
    """Both VMs have members from the file's first row to its last: each domain's
    states add up to that span, and in each interval to the interval's length."""
    first, last = _file_span(TWO_VMS)
    doc = json.loads(run_cli("report", TWO_VMS, "--format", "json", "--interval", "3us").out)
    assert [d["name"] for d in doc["domains"]] == ["web", "db"]
    for d in doc["domains"]:
        assert len(d["states"]) == 7
        assert sum(s["ns"] for s in d["states"].values()) == last - first
        assert d["lifetime_ns"] == last - first
    bounds = [(i["start_ns"], i["end_ns"]) for i in doc["intervals"]]
    assert bounds == [(t, min(t + 3000, last)) for t in range(first, last, 3000)]
    for interval in doc["intervals"]:
        length = interval["end_ns"] - interval["start_ns"]
        assert len(interval["domains"]) == 2
        for d in interval["domains"]:
            assert sum(s["ns"] for s in d["states"].values()) == length


def test_window_from_to(run_cli):
    doc = json.loads(run_cli("report", TWO_VMS, "--format", "json",
                             "--from", "0.000002", "--to", "0.000006").out)
    assert doc["window"] == {"start_ns": 2000, "end_ns": 6000, "duration_ns": 4000}
    web = doc["domains"][0]
    assert web["states"]["concurrency_hazard"]["ns"] == 3000
    assert web["states"]["full_run"]["ns"] == 1000


def test_qemu_sample_is_one_vm_of_four_vcpus(run_cli):
    result = run_cli("report", "--sample", "--format", "json", "--interval", "1s")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    (vm,) = doc["domains"]
    assert (vm["name"], vm["members_seen"]) == ("demo", 4)
    # 4 burners on 2 host cores: some vCPUs run while others wait
    first = doc["intervals"][0]["domains"][0]["states"]
    assert max(first, key=lambda s: first[s]["ns"]) == "concurrency_hazard"


def test_sample_runs_and_is_dominated_by_contention(run_cli):
    result = run_cli("report", "--sample", "sim", "--format", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    web = next(d for d in doc["domains"] if d["name"] == "web")
    top = max(web["states"], key=lambda s: web["states"][s]["ns"])
    assert top == "concurrency_hazard"


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["report", "/nonexistent.csv"], 1, "/nonexistent.csv: no such file"),
    (["report"], 2, "no SOURCE given"),
    (["report", TWO_VMS, "--interval", "fast"], 2, "not a duration"),
    (["report", TWO_VMS, "--from", "3", "--to", "1"], 2, "--to must be after --from"),
    (["report", TWO_VMS, "--input-format", "nope"], 2, "unknown input format 'nope'"),
    (["report", TWO_VMS, "--cpu-hz", "fast"], 2, "not a frequency"),
])
def test_errors_are_one_line(run_cli, argv, code, message):
    result = run_cli(*argv)
    assert result.code == code
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_usage_error_from_argparse_exits_2(run_cli, capsys):
    assert run_cli("report", "--format", "yaml").code == 2


def test_output_file(run_cli, tmp_path):
    target = tmp_path / "out.csv"
    assert run_cli("report", TWO_VMS, "--format", "csv", "-o", str(target)).code == 0
    assert target.read_text().startswith("scope,start_ns,end_ns,domain,name")


def test_output_into_a_missing_directory_is_an_error_not_a_usage_error(run_cli, tmp_path):
    target = tmp_path / "no-such-dir" / "out.csv"
    result = run_cli("report", TWO_VMS, "--format", "csv", "-o", str(target))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"runstate: error: cannot write {target}: No such file or directory"]
    assert not target.parent.exists()


def test_help_has_examples(run_cli):
    for command in ("report", "convert", "formats"):
        result = run_cli(command, "--help")
        assert result.code == 0
        assert "example" in result.out


def test_strict_makes_inconsistent_rows_fatal(run_cli, tmp_path):
    path = tmp_path / "mismatch.csv"
    path.write_text("time_ns,domain,member,old_state,new_state\n"
                    "1,a,0,running,blocked\n2,a,0,running,blocked\n")
    lenient = run_cli("report", str(path), "--format", "json")
    assert json.loads(lenient.out)["anomalies"]["old_state_mismatch"] == 1
    strict = run_cli("report", str(path), "--strict")
    assert strict.code == 1
    assert "old_state_mismatch 1" in strict.err


def test_group_file_and_the_empty_report(run_cli, tmp_path):
    trace = str(DATA / "linux" / "busy4.perf.data")
    mapping = tmp_path / "groups.json"
    mapping.write_text('{"busy": ["^rs_load$"]}')
    doc = json.loads(run_cli("report", trace, "--group", str(mapping), "--format", "json").out)
    (busy,) = doc["domains"]
    assert busy["name"] == "busy"
    assert max(busy["states"], key=lambda s: busy["states"][s]["ns"]) == "concurrency_hazard"
    mapping.write_text('{"nothing": ["^no such thread$"]}')
    table = run_cli("report", trace, "--group", str(mapping)).out
    assert "no domain: no member of any group has events" in table
