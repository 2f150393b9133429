"""--group modes over synthetic thread tables: vm, process, thread, cgroup, FILE, default."""

from __future__ import annotations

import pytest

from runstate.errors import UsageError
from runstate.model.registry import Registry
from runstate.model.states import MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.grouping import GroupMode, make_grouping
from runstate.sources.linux.sched import sched_batches
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames

SW = int(SchedKind.SWITCH)


def qemu_names() -> TaskNames:
    n = TaskNames()
    n.comm.update({500: "qemu-system-x86", 501: "qemu-system-x86", 502: "CPU 0/KVM",
                   503: "CPU 1/KVM", 504: "kvm-nx-lpage-re", 600: "qemu-system-x86",
                   601: "CPU 0/TCG", 700: "bash"})
    n.tgid.update({500: 500, 501: 500, 502: 500, 503: 500, 504: 500, 600: 600, 601: 600,
                   700: 700})
    n.vm_name[500] = "web"
    return n


def test_default_is_vm_when_vcpu_threads_exist():
    assert make_grouping(None, qemu_names()).mode is GroupMode.VM
    plain = TaskNames(comm={700: "bash"}, tgid={700: 700})
    assert make_grouping(None, plain).mode is GroupMode.PROCESS


def test_vm_mode_takes_vcpu_threads_only_and_names_them():
    g = make_grouping("vm", qemu_names())
    a = g.assign(503)
    assert a is not None and (a.domain_name, a.member_name) == ("web", "vcpu1")
    b = g.assign(601)
    assert b is not None and b.domain_name == "qemu:600" and b.member_name == "vcpu0"
    for tid in (500, 501, 504, 700, 0):
        assert g.assign(tid) is None
    assert g.expected_members == {"vm:500": 2, "vm:600": 1}


def test_vm_domains_through_the_converter():
    ev = SchedEvents.from_columns([10, 20, 30], [0, 1, 0], [SW, SW, SW],
                                  [0, 0, 502], [502, 700, 504], [0, 0, 1])
    reg, info = Registry(), SourceInfo(format="t", path="t")
    list(sched_batches("t", [ev], qemu_names(), reg, info, ReadOptions()))
    web = reg.domains[reg.find_domain("vm:500")]
    assert web.name == "web" and web.expected_members == 2
    assert [m.name for m in reg.members if m.domain == reg.find_domain("vm:500")] == ["vcpu0"]
    assert reg.find_domain("proc:700") is None


def test_cgroup_needs_cgroup_information():
    with pytest.raises(UsageError, match="cgroup"):
        make_grouping("cgroup", qemu_names())
    n = qemu_names()
    n.cgroup[700] = "/user.slice"
    a = make_grouping("cgroup", n).assign(700)
    assert a is not None and a.domain_key == "cgroup:/user.slice"
    assert make_grouping("cgroup", n).assign(502) is None


def test_unknown_group_argument():
    with pytest.raises(UsageError, match="not vm, process"):
        make_grouping("/nonexistent/groups.json", qemu_names())


def test_silent_members_take_their_start_state():
    """Members with no event: /proc letters; R only where a CPU never switched."""
    n = TaskNames(comm={10: "a", 11: "a", 12: "a"}, tgid={10: 10, 11: 10, 12: 10},
                  start_state={11: "S", 12: "R"})
    ev = SchedEvents.from_columns([10, 20], [0, 0], [SW, SW], [0, 10], [10, 0], [0, 1])
    reg, info = Registry(), SourceInfo(format="t", path="t")
    list(sched_batches("t", [ev], n, reg, info, ReadOptions(), n_cpus=2))
    by_key = {reg.members[m].key: s for m, s in info.initial_states.items()
              if not reg.members[m].name.startswith("cpu")}  # cpu1 never switched: unknown
    assert by_key == {"11": MemberState.BLOCKED, "12": MemberState.RUNNING}
    # with every CPU switching, a silent R task cannot be placed: counted, left out
    reg, info = Registry(), SourceInfo(format="t", path="t")
    list(sched_batches("t", [ev], n, reg, info, ReadOptions(), n_cpus=1))
    assert {reg.members[m].key for m in info.initial_states} == {"11"}  # cpu0 switched
    assert info.anomalies["silent_runnable_unresolved"] == 1


def test_real_qemu_trace_groups_its_vcpus(data):
    """vm4: a 4-vCPU TCG guest in its BIOS; vCPU 0 busy-idles, 1-3 never ran."""
    from .helpers import run

    result, src = run(data / "vm4.perf.data")
    vms = [d for d in result.domains if d.key.startswith("vm:")]
    assert len(vms) == 1
    vm = vms[0]
    assert vm.name.startswith("qemu:")          # perf.data does not carry -name guest=
    assert [m.name for m in vm.members] == ["vcpu0"]
    assert vm.members_seen == 1 and vm.members_expected == 4
    assert not [d for d in result.domains if d.key.startswith("proc:")]
    # vcpu0's thread exists before and after the recording: the VM lives throughout
    window = result.end_ticks - result.start_ticks
    assert vm.lifetime_ticks == window == sum(vm.members[0].ticks.values())
