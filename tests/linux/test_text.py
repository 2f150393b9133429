"""Text readers: comms with spaces and dashes, trace-cmd plugin forms, lost-event lines."""

from __future__ import annotations

import pytest

from runstate.errors import InputError
from runstate.sources.linux.perfscript import parse_prev_state, time_ns
from runstate.sources.registry import SNIFF_BYTES, detect

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
    assert v0.ns["running"] == (500_000 - 100) + (1_000_000 - 700_000)
    assert v0.ns["blocked"] == 100_000
    assert v0.ns["runnable"] == 100_000  # woken at 0.6 ms, switched in at 0.7 ms


def test_trace_cmd_plugin_format_and_lost_lines(tmp_path):
    f = tmp_path / "tc.txt"
    f.write_text(TRACE_CMD)
    assert detect(str(f), f.read_bytes()[:SNIFF_BYTES]).FORMAT.name == "ftrace-text"
    result, src = run(f, group="thread")
    assert src.info.anomalies["lost_events"] == 5
    d = next(d for d in result.domains if d.key == "thread:4002")
    assert d.members[0].name == "CPU 0/KVM[4002]"
    assert sum(s.ns for s in d.states.values()) == d.lifetime_ns


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
    for d in result.domains:
        assert sum(s.ns for s in d.states.values()) == d.lifetime_ns
