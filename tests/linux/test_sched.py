"""The SchedEvents -> member-state conversion: rules, chain repair, anomalies, strict mode."""

from __future__ import annotations

import numpy as np
import pytest

from runstate.errors import InputError
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import LostEvents, prev_state_after, sched_batches
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames

R, RB, B, A, U = (int(MemberState.RUNNING), int(MemberState.RUNNABLE),
                  int(MemberState.BLOCKED), int(MemberState.ABSENT), int(MemberState.UNKNOWN))
SW, WK, WN = int(SchedKind.SWITCH), int(SchedKind.WAKEUP), int(SchedKind.WAKEUP_NEW)


def names() -> TaskNames:
    n = TaskNames()
    for tid in (10, 11, 12):
        n.comm[tid] = "app"
        n.tgid[tid] = 10
    n.comm[50] = "other"
    n.tgid[50] = 50
    return n


def convert(rows, group="process", strict=False, items=None):
    ev = SchedEvents.from_columns(*zip(*rows, strict=True)) if rows else None
    reg, info = Registry(), SourceInfo(format="test", path="t")
    stream = items if items is not None else [ev]
    batches = list(sched_batches("t", stream, names(), reg, info,
                                 ReadOptions(group=group, strict=strict)))
    out = [tuple(int(x) for x in r) for b in batches
           for r in zip(b.time, b.member, b.old_state, b.new_state, strict=True)]
    keyed = [(t, (reg.members[m].key if m >= 0 else None), o, n) for t, m, o, n in out]
    return keyed, info, reg


def test_prev_state_rules():
    assert prev_state_after(0) == RB
    assert prev_state_after(0x100) == RB
    assert prev_state_after(0x1) == B
    assert prev_state_after(0x2) == B
    assert prev_state_after(0x10) == A
    assert prev_state_after(0x20) == A
    assert prev_state_after(0x80) == B


def test_basic_transitions_and_first_event_inference():
    rows = [
        # t, cpu, kind, pid, other, prev_state
        (100, 0, SW, 10, 11, 1),   # 10 was running, blocks; 11 was runnable, runs
        (150, 0, WK, 10, -1, 0),   # 10 wakes
        (160, 0, WK, 11, -1, 0),   # wakeup of a running task: nothing
        (200, 0, SW, 11, 10, 0),   # 11 preempted -> runnable; 10 runs
        (300, 0, SW, 10, 0, 0x10),  # 10 exits (X)
    ]
    out, info, _ = convert(rows)
    mine = [r for r in out if r[1] in ("10", "11")]
    assert mine == [
        (100, "10", R, B), (100, "11", RB, R),
        (150, "10", B, RB),
        (200, "11", R, RB), (200, "10", RB, R),
        (300, "10", R, A),
    ]
    assert info.anomalies.get("wakeup_of_running") == 1
    assert "switch_chain_breaks" not in info.anomalies


def test_idle_cpu_is_a_host_idle_member():
    rows = [(100, 1, SW, 0, 10, 0), (200, 1, SW, 10, 0, 1)]
    out, _, reg = convert(rows)
    idle = [r for r in out if r[1] == "1"]
    assert idle == [(100, "1", R, B), (200, "1", B, R)]
    d = reg.domains[reg.find_domain("host-idle")]
    assert d.tags == {"kind": "host-idle"}


def test_chain_break_from_idle_is_repaired_after_the_wakeup():
    rows = [
        (100, 1, SW, 10, 0, 1),    # 10 blocks, cpu1 idle
        (150, 1, WK, 10, -1, 0),   # woken from idle (hardirq)
        # the idle -> 10 switch is lost
        (400, 1, SW, 10, 0, 1),    # 10 switches out without having switched in
    ]
    out, info, _ = convert(rows)
    # the switch-in happened at some moment in (150, 400): until 400 both 10 and
    # the idle CPU are unknown, never a guessed running stretch
    assert [r for r in out if r[1] == "10"] == [
        (100, "10", R, B), (150, "10", B, RB), (151, "10", RB, U), (400, "10", U, B)]
    assert [r for r in out if r[1] == "1"] == [
        (100, "1", B, R), (151, "1", R, U), (400, "1", U, B), (400, "1", B, R)]
    assert info.anomalies["switch_chain_breaks"] == 1
    assert info.anomalies["chain_repairs"] == 1
    # 10 (proc:10) and the idle CPU (host-idle): 249 ns each
    assert info.uncertain_ticks == {"proc:10": {"lost_switch": 249},
                                 "host-idle": {"lost_switch": 249}}
    times = [r[0] for r in out]
    assert times == sorted(times)


def test_lost_task_to_task_switch_is_resolved_by_the_next_event():
    rows = [
        (100, 0, SW, 50, 11, 0),   # 11 runs on cpu0
        (200, 0, WK, 12, -1, 0),   # 12 wakes
        # the 11 -> 12 switch is lost; 11 blocked
        (300, 0, SW, 12, 50, 0),   # 12 switches out: chain break
        (500, 1, WK, 11, -1, 0),   # 11 wakes: it was blocked since the lost switch
    ]
    out, info, _ = convert(rows)
    # 11 ran until an unknown moment in (200, 300), 12 from then on; the wakeup at
    # 500 proves 11 had blocked by 300
    assert [r for r in out if r[1] == "11"] == [
        (100, "11", RB, R), (201, "11", R, U), (300, "11", U, B), (500, "11", B, RB)]
    assert (201, "12", RB, U) in out
    assert (300, "12", U, RB) in out
    assert info.anomalies["chain_repairs"] == 1


def test_lost_wakeup_before_a_switch_in_is_unknown_since_the_block():
    rows = [
        (100, 0, SW, 10, 50, 1),   # 10 blocks
        # 10's wakeup is lost
        (300, 0, SW, 50, 10, 0),   # 10 switches in: when it woke, after 100, is unknown
    ]
    out, info, _ = convert(rows)
    assert [r for r in out if r[1] == "10"] == [
        (100, "10", R, B), (100, "10", B, U), (300, "10", U, R)]
    assert info.anomalies["switch_in_not_runnable"] == 1
    assert info.uncertain_ticks == {"proc:10": {"lost_wakeup": 200}}


def test_unresolved_switch_out_stays_unknown_until_the_next_event():
    rows = [
        (100, 0, SW, 50, 11, 0),   # 11 runs on cpu0
        (200, 0, WK, 12, -1, 0),
        (300, 0, SW, 12, 50, 0),   # chain break: 11 switched out unseen
        # 11's next event is a switch-in: runnable since, or blocked and its
        # wakeup lost? The span goes on up to it.
        (700, 1, SW, 0, 11, 0),
    ]
    out, info, _ = convert(rows)
    assert [r for r in out if r[1] == "11"] == [
        (100, "11", RB, R), (201, "11", R, U), (300, "11", U, U), (700, "11", U, R)]
    assert info.anomalies["chain_repairs_unproven"] == 1


def test_loss_window_markers_and_fresh_inference():
    ev1 = SchedEvents.from_columns([100], [0], [SW], [10], [11], [1])
    ev2 = SchedEvents.from_columns([500], [0], [SW], [10], [11], [1])
    out, info, _ = convert(None, items=[ev1, LostEvents(0, 100, 400, 7), ev2])
    markers = [(t, n) for t, k, o, n in out if k is None]
    assert markers == [(100, LOSS_BEGIN), (400, LOSS_END)]
    # after the loss, 10's switch-out again tells it was running
    assert (500, "10", R, B) in out
    assert info.anomalies["lost_events"] == 7


def test_new_task_starts_absent():
    rows = [(100, 0, WN, 12, -1, 0), (200, 0, SW, 50, 12, 0)]
    out, _, _ = convert(rows)
    assert (100, "12", A, RB) in out


def test_strict_makes_anomalies_fatal():
    rows = [(100, 1, SW, 10, 0, 1), (400, 1, SW, 10, 0, 1)]
    with pytest.raises(InputError, match="switch_chain_breaks"):
        convert(rows, strict=True)


def test_no_switch_events_is_an_error_naming_the_events():
    rows = [(100, 0, WK, 10, -1, 0)]
    with pytest.raises(InputError, match="sched:sched_switch"):
        convert(rows)


def test_grouping_modes():
    rows = [(100, 0, SW, 10, 50, 0), (200, 0, SW, 50, 11, 0)]
    _, _, reg = convert(rows, group="thread")
    assert {d.key for d in reg.domains} >= {"thread:10", "thread:50", "thread:11"}
    _, _, reg = convert(rows, group="process")
    assert {d.key for d in reg.domains} >= {"proc:10", "proc:50"}


def test_group_file(tmp_path):
    f = tmp_path / "g.json"
    f.write_text('{"web": [50], "apps": ["ap+"]}')
    rows = [(100, 0, SW, 10, 50, 0), (200, 0, SW, 50, 11, 0)]
    out, _, reg = convert(rows, group=str(f))
    keys = {d.key for d in reg.domains}
    assert keys == {"group:web", "group:apps", "host-idle"} or \
        keys == {"group:web", "group:apps"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": ["("]}')
    with pytest.raises(InputError, match="regular expression"):
        convert(rows, group=str(bad))


def test_rows_are_time_sorted_across_chunks():
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.integers(1, 50, 3000))
    pids = rng.choice([0, 10, 11, 12, 50], size=(3000, 2))
    rows = [(int(t[i]), int(i % 2), SW, int(a), int(b), int(rng.choice([0, 1])))
            for i, (a, b) in enumerate(pids) if a != b]
    ev = SchedEvents.from_columns(*zip(*rows, strict=True))
    chunks = [ev.take(np.arange(i, min(i + 97, len(ev)))) for i in range(0, len(ev), 97)]
    out, _, _ = convert(None, items=chunks)
    times = [r[0] for r in out]
    assert times == sorted(times)


def test_an_event_of_the_running_task_ends_the_span():
    """The actor (the task current where an event was recorded) is evidence: 10
    waking 11 on cpu1 at 250 proves 10 ran there by then."""
    rows = [
        # t, cpu, kind, pid, other, prev_state, actor
        (100, 1, SW, 10, 0, 1, 10),   # 10 blocks, cpu1 idle
        (150, 1, WK, 10, -1, 0, 0),   # woken from idle (the idle task is current)
        # the idle -> 10 switch is lost
        (250, 1, WK, 11, -1, 0, 10),  # 10 wakes 11 on cpu1: 10 is running
        (400, 1, SW, 10, 0, 1, 10),
    ]
    out, info, _ = convert(rows)
    assert [r for r in out if r[1] == "10"] == [
        (100, "10", R, B), (150, "10", B, RB), (151, "10", RB, U), (250, "10", U, R),
        (400, "10", R, B)]
    assert [r for r in out if r[1] == "1"] == [
        (100, "1", B, R), (151, "1", R, U), (250, "1", U, B), (400, "1", B, R)]
    assert info.anomalies["switch_chain_breaks"] == 1
    assert info.uncertain_ticks == {"proc:10": {"lost_switch": 99},
                                 "host-idle": {"lost_switch": 99}}
