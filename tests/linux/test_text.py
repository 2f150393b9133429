"""Text readers: comms with spaces and dashes, trace-cmd plugin forms, lost-event lines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from runstate.errors import InputError
from runstate.sources.linux.perfscript import parse_prev_state, time_ns
from runstate.sources.registry import SNIFF_BYTES, detect
from tests.conservation import assert_lifetime_from_members, assert_lifetimes

from .conftest import DATA
from .helpers import run

PERF = (DATA / "vm-handmade.perf-script.txt").read_text()
TRACE_CMD = (DATA / "plugin-handmade.trace-cmd.txt").read_text()


def test_prev_state_letters():
    assert parse_prev_state("R") == 0
    assert parse_prev_state("R+") == 0x100
    assert parse_prev_state("S") == 1
    assert parse_prev_state("D") == 2
    assert parse_prev_state("X") == 0x10
    assert parse_prev_state("Z") == 0x20
    assert parse_prev_state("S|D") == 3
    assert parse_prev_state("0x80") == 0x80
    assert parse_prev_state("Q") is None


def test_time_precision():
    assert time_ns("100", "000001") == 100_000_001_000
    assert time_ns("100", "000000001") == 100_000_000_001


def test_perf_script_vcpu_comms_with_spaces_make_a_vm(tmp_path):
    f = tmp_path / "vm.txt"
    f.write_text(PERF)
    assert detect(str(f), f.read_bytes()[:SNIFF_BYTES]).FORMAT.name == "perf-script"
    result, _ = run(f)
    vms = [d for d in result.domains if d.key == "vm:4000"]
    assert len(vms) == 1
    vm = vms[0]
    assert vm.name == "qemu:4000"
    assert sorted(m.name for m in vm.members) == ["vcpu0", "vcpu1"]
    v0 = next(m for m in vm.members if m.name == "vcpu0")
    assert v0.ticks["running"] == (500_000 - 100) + (1_000_000 - 700_000)
    assert v0.ticks["blocked"] == 100_000
    assert v0.ticks["runnable"] == 100_000  # woken at 0.6 ms, switched in at 0.7 ms


def test_trace_cmd_plugin_format_and_lost_lines(tmp_path):
    f = tmp_path / "tc.txt"
    f.write_text(TRACE_CMD)
    assert detect(str(f), f.read_bytes()[:SNIFF_BYTES]).FORMAT.name == "ftrace-text"
    result, src = run(f, group="thread")
    assert src.info.anomalies["lost_events"] == 5
    d = next(d for d in result.domains if d.key == "thread:4002")
    assert d.members[0].name == "CPU 0/KVM[4002]"
    assert_lifetime_from_members(d, result.end_ticks - result.start_ticks)


def test_text_errors_name_the_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text(PERF + "this is not a trace line\n")
    with pytest.raises(InputError, match=r"bad.txt:7: not a perf script event line"):
        run(f, fmt="perf-script")
    g = tmp_path / "back.txt"
    lines = PERF.splitlines(keepends=True)
    g.write_text(lines[1] + lines[0])
    with pytest.raises(InputError, match=r"back.txt:2: time goes backwards"):
        run(g)


def test_exit_and_reappearance_are_counted(tmp_path):
    lines = [
        "  a  10/11  [000]  1.000000100:  sched:sched_switch: prev_comm=a prev_pid=11 "
        "prev_prio=120 prev_state=X ==> next_comm=b next_pid=12 next_prio=120",
        # 11 exited (X); it switches in again without being created: pid reuse or damage
        "  b  10/12  [000]  1.000000200:  sched:sched_switch: prev_comm=b prev_pid=12 "
        "prev_prio=120 prev_state=S ==> next_comm=a next_pid=11 next_prio=120",
        "  a  10/11  [000]  1.000000300:  sched:sched_switch: prev_comm=a prev_pid=11 "
        "prev_prio=120 prev_state=S ==> next_comm=b next_pid=12 next_prio=120",
    ]
    f = tmp_path / "reuse.txt"
    f.write_text("\n".join(lines) + "\n")
    result, src = run(f, group="thread")
    assert src.info.anomalies["event_after_exit"] == 1
    assert_lifetimes(result)


# ---- perf script -F fields, through the CLI ------------------------------------

FULL = (DATA / "busy4.perf-script-pid.txt").read_text()
#: what each -F field looks like in a line of the fixture (written with all of them)
FIELD_TEXT = {
    "pid": (r"^(\s*\S.*?\s)\d+/(\d+\s)", r"\1\2"),
    "cpu": (r"\s\[\d{3}\]\s", " "),
    "time": (r"\s\d+\.\d+:\s", " "),
    "event": (r"\ssched:sched_\w+:", ""),
}


def without(field: str, text: str = FULL) -> str:
    pattern, replacement = FIELD_TEXT[field]
    return "".join(re.sub(pattern, replacement, line, count=1)
                   for line in text.splitlines(keepends=True))


@pytest.mark.parametrize("field", ["cpu", "time", "event"])
def test_missing_field_is_named_with_the_f_option(run_cli, tmp_path, field):
    f = tmp_path / f"no-{field}.txt"
    f.write_text(without(field))
    result = run_cli("report", str(f))
    assert result.code == 1
    assert result.err.count("\n") == 1, result.err
    assert f"without the {field} field" in result.err
    assert "-F comm,pid,tid,cpu,time,event,trace" in result.err
    assert "unknown input format" not in result.err


def test_missing_trace_field_is_named(run_cli, tmp_path):
    f = tmp_path / "no-trace.txt"
    f.write_text("".join(line.split(": ", 2)[0] + ": " + line.split(": ", 2)[1] + ":\n"
                         for line in FULL.splitlines()[:20]))
    result = run_cli("report", str(f))
    assert result.code == 1 and "without the trace field" in result.err


def test_missing_pid_is_an_error_unless_threads_are_asked(run_cli, tmp_path):
    f = tmp_path / "no-pid.txt"
    f.write_text(without("pid"))
    result = run_cli("report", str(f))
    assert result.code == 1
    assert "without the pid field" in result.err and "--group thread" in result.err
    assert "-F comm,pid,tid,cpu,time,event,trace" in result.err
    threads = run_cli("report", str(f), "--group", "thread", "--format", "json")
    assert threads.code == 0, threads.err
    # the same threads as from the text with pids, grouped by thread
    full = tmp_path / "full.txt"
    full.write_text(FULL)
    reference = run_cli("report", str(full), "--group", "thread", "--format", "json")
    strip = json.loads
    assert [d["states"] for d in strip(threads.out)["domains"]] == \
        [d["states"] for d in strip(reference.out)["domains"]]


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed")
def test_documented_fields_give_the_perf_data_figures(run_cli, tmp_path):
    """``perf script -F comm,pid,tid,cpu,time,event,trace --ns`` text reads like the
    perf.data it came from: the 4-thread process is a concurrency hazard in both."""
    text = tmp_path / "p.txt"
    with text.open("w") as out:
        subprocess.run(["perf", "script", "-i", str(DATA / "busy4.perf.data"), "-F",
                        "comm,pid,tid,cpu,time,event,trace", "--ns"], stdout=out,
                       stderr=subprocess.DEVNULL, check=True)
    a = json.loads(run_cli("report", str(text), "--format", "json").out)
    b = json.loads(run_cli("report", str(DATA / "busy4.perf.data"), "--format", "json").out)
    # (names may differ: a kworker's COMM record carries its workqueue, the trace not)
    assert {d["domain"]: d["states"] for d in a["domains"]} == \
        {d["domain"]: d["states"] for d in b["domains"]}
    pid = int((DATA / "busy4.pid").read_text())
    busy = next(d for d in a["domains"] if d["name"] == f"rs_load[{pid}]")
    assert busy["states"]["concurrency_hazard"]["share"] > 0.9


def test_empty_input_is_said(run_cli, tmp_path):
    f = tmp_path / "empty.txt"
    f.write_bytes(b"")
    result = run_cli("report", str(f))
    assert result.code == 1
    assert result.err == f"runstate: error: {f}: empty input (no data to read)\n"


def test_empty_stdin_is_said():
    done = subprocess.run([sys.executable, "-m", "runstate", "report", "-"], input=b"",
                          capture_output=True, check=False)
    assert done.returncode == 1
    assert done.stderr.decode() == "runstate: error: stdin: empty input (no data to read)\n"
