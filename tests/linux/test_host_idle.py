"""Host idleness: known where a CPU's switches tell it, said to be unknown where they cannot.

A CPU that never switches in the window ran one thing throughout; whether
that was its idle task the trace cannot say, so its idle share is unknown
(shown as lost), never 0 %.  A CPU that switches was, before its first switch,
running that switch's prev: idle or busy from the window start.
"""

from __future__ import annotations

import json
import time

from runstate.model.registry import Registry
from runstate.model.states import DomainState, MemberState
from runstate.report.model import DomainRow, MemberRow, Report, StateRow, host_idle_line
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import SchedConverter
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames

LINE = ("{comm:>16} {pid:5}/{tid:<5} [{cpu:03}] {t:.9f}: {event}\n")
SWITCH = ("sched:sched_switch: prev_comm={a} prev_pid={ap} prev_prio=120 prev_state={st} "
          "==> next_comm={b} next_pid={bp} next_prio=120")
WAKEUP = "sched:sched_wakeup: comm={b} pid={bp} prio=120 target_cpu={cpu:03}"


def _trace(tmp_path, lines):
    path = tmp_path / "t.perf-script.txt"
    path.write_text("".join(lines))
    return path


def _switch(t, cpu, a, ap, st, b, bp):
    return LINE.format(comm=a, pid=ap, tid=ap, cpu=cpu, t=t,
                       event=SWITCH.format(a=a, ap=ap, st=st, b=b, bp=bp))


def _wakeup(t, cpu, b, bp):
    return LINE.format(comm="swapper", pid=0, tid=0, cpu=cpu, t=t,
                       event=WAKEUP.format(b=b, bp=bp, cpu=cpu))


def test_cpu_without_a_switch_is_unknown_not_idle(tmp_path, run_cli):
    """cpu0 switches (idle 40 % of the 1 s window, worked out by hand); cpu1 has only
    a wakeup: its idle share is unknown."""
    path = _trace(tmp_path, [
        _switch(100.0, 0, "app", 10, "S", "swapper/0", 0),   # cpu0 busy until 100.0
        _wakeup(100.2, 1, "app", 10),
        _switch(100.4, 0, "swapper/0", 0, "R", "app", 10),   # idle 100.0 .. 100.4
        _switch(101.0, 0, "app", 10, "S", "swapper/0", 0),
    ])
    res = run_cli("report", "--group", "thread", "--format", "json", str(path))
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    cpus = {m["name"]: m["states"] for d in doc["host_idle"] for m in d["members"]}
    window = doc["window"]["duration_ns"]
    assert window == 1_000_000_000
    assert cpus["cpu0"]["running"]["ns"] == 400_000_000
    assert cpus["cpu0"]["blocked"]["ns"] == 600_000_000
    assert cpus["cpu1"]["lost"]["ns"] == window
    assert cpus["cpu1"]["running"]["ns"] == 0
    table = run_cli("report", "--group", "thread", str(path))
    assert "host idle: cpu0 40.0%, cpu1 unknown" in table.out


def test_cpu_first_switch_from_a_task_was_busy_from_the_start(tmp_path, run_cli):
    path = _trace(tmp_path, [
        _switch(100.0, 0, "swapper/0", 0, "R", "app", 10),   # idle from the start
        _switch(100.5, 1, "other", 20, "S", "swapper/1", 0),  # busy from the start
        _switch(101.0, 0, "app", 10, "S", "swapper/0", 0),
        _switch(101.0, 1, "swapper/1", 0, "R", "other", 20),
    ])
    res = run_cli("report", "--group", "thread", "--format", "json", str(path))
    cpus = {m["name"]: m["states"] for d in json.loads(res.out)["host_idle"]
            for m in d["members"]}
    assert cpus["cpu0"]["running"]["ns"] == 0  # the window starts at cpu0's first switch
    assert cpus["cpu0"]["blocked"]["ns"] == 1_000_000_000
    assert cpus["cpu1"]["blocked"]["ns"] == 500_000_000
    assert cpus["cpu1"]["running"]["ns"] == 500_000_000
    assert cpus["cpu1"]["lost"]["ns"] == 0


def _convert(n_cpus):
    ev = SchedEvents.from_columns([100, 200], [0, 0], [int(SchedKind.SWITCH)] * 2,
                                  [10, 0], [0, 10], [1, 0])
    names = TaskNames(comm={10: "app"}, tgid={10: 10}, start_state={11: "R"})
    reg, info = Registry(), SourceInfo(format="t", path="t")
    conv = SchedConverter("t", reg, info, names, ReadOptions(group="thread"), n_cpus=n_cpus)
    conv.feed(ev)
    conv.finish()
    return reg, info


def test_quiet_cpus_the_header_counts_are_unknown():
    reg, info = _convert(3)
    idle = {m.name: i for i, m in enumerate(reg.members) if m.name.startswith("cpu")}
    assert set(idle) == {"cpu0", "cpu1", "cpu2"}
    assert info.initial_states[idle["cpu1"]] == MemberState.UNKNOWN
    assert info.initial_states[idle["cpu2"]] == MemberState.UNKNOWN
    assert idle["cpu0"] not in info.initial_states


def test_a_damaged_cpu_count_is_not_followed():
    begun = time.perf_counter()
    reg, info = _convert(2**32 - 1)
    assert time.perf_counter() - begun < 1
    assert [m.name for m in reg.members if m.name.startswith("cpu")] == ["cpu0"]
    # the silent runnable task 11 could only have run on a CPU that never switched; a
    # damaged count proves no such CPU, so it is left out and counted
    assert info.anomalies["silent_runnable_unresolved"] == 1
    assert reg.n_members == 2  # app (10) and cpu0


def test_host_idle_line_says_unknown_share():
    def cpu(key, idle, lost):
        return MemberRow(key, f"cpu{key}", {"running": idle, "runnable": 0,
                                            "blocked": 1000 - idle - lost, "offline": 0,
                                            "lost": lost})
    states = {s: StateRow(0, None, 0, 0, 0, 0, 0) for s in DomainState}
    host = DomainRow("host-idle", "host idle", 1000, None, 3, None, states, None, 0, 0,
                     (cpu("0", 300, 0), cpu("1", 100, 500), cpu("2", 0, 1000)))
    report = Report("t", "t", "ns", None, False, 0, 1000, (), (host,), (), {})
    assert host_idle_line(report) == \
        "host idle: cpu0 30.0%, cpu1 10.0% (+50.0% unknown), cpu2 unknown"
