"""Members whose state user space sets (tasks the kernel's task iterator does not visit).

A member counted as unknown makes its domain ``lost`` until its next event
tells its state; a member already counted keeps the state its events gave.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from runstate.errors import EnvironmentProblem
from runstate.live.bpf.loader import BpfAccounting, MemberCode, missing_requirement
from runstate.model.states import DomainState
from tests.live.live_workloads import need_root

pytestmark = pytest.mark.live
NAPPER = "import time\nwhile True:\n    time.sleep(0.02)\n"
GROUP = 7


def _accounting() -> BpfAccounting:
    need_root()
    if missing_requirement():
        pytest.skip(str(missing_requirement()))
    try:
        return BpfAccounting()
    except EnvironmentProblem as problem:
        pytest.skip(str(problem))


def _group(acc: BpfAccounting) -> tuple[int, list[int]]:
    c = acc.read()
    row = c.groups[list(c.group_ids).index(GROUP)]
    return int(row["state"]), [int(v) for v in row["ns"]]


def test_unknown_member_makes_the_domain_lost_until_its_next_event() -> None:
    napper = subprocess.Popen([sys.executable, "-c", NAPPER])
    acc = _accounting()
    try:
        time.sleep(0.3)
        acc.add_group(GROUP)
        acc.add_members({napper.pid: GROUP})
        start = time.monotonic_ns()
        assert acc.set_state(napper.pid, MemberCode.UNKNOWN)
        time.sleep(0.3)  # it naps 20 ms at a time: many events tell its state meanwhile
        state, ns = _group(acc)
        elapsed = time.monotonic_ns() - start
        assert state != DomainState.LOST  # its wakeups and switches told its state
        assert 0 < ns[DomainState.LOST] < 0.1 * elapsed  # lost only until the first one
        assert ns[DomainState.BLOCKED] > 0
    finally:
        acc.close()
        napper.kill()
        napper.wait()


def test_counted_member_keeps_its_state() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    acc = _accounting()
    try:
        time.sleep(0.3)
        acc.add_group(GROUP)
        acc.add_members({sleeper.pid: GROUP})
        acc.count_new_members()  # the iterator sees it sleeping
        assert acc.uncounted([sleeper.pid]) == []
        acc.set_state(sleeper.pid, MemberCode.UNKNOWN)
        state, ns = _group(acc)
        assert state == DomainState.BLOCKED and ns[DomainState.LOST] == 0
        assert not acc.set_state(sleeper.pid + 10_000_000, MemberCode.BLOCKED)  # not a member
    finally:
        acc.close()
        sleeper.kill()
        sleeper.wait()


def test_a_held_group_counts_once_all_its_members_are_counted() -> None:
    """The iterator counts members one after the other: a group counting meanwhile would
    show the first ones alone (four spinners on two cores as full_run)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"])
                for _ in range(4)]
    acc = _accounting()
    try:
        time.sleep(0.3)
        assert acc.add_group(GROUP, held=True)
        assert not acc.add_group(GROUP, held=True)  # it exists: kept as it is
        acc.add_members({p.pid: GROUP for p in spinners})
        acc.count_new_members()
        assert acc.uncounted([p.pid for p in spinners]) == []
        state, ns = _group(acc)
        assert state == -1 and sum(ns) == 0  # held: no state, no time
        released = time.monotonic_ns()
        acc.release(GROUP)
        time.sleep(0.3)
        state, ns = _group(acc)
        elapsed = time.monotonic_ns() - released
        # four busy on two cores: some run while others wait, never all four running
        assert state in (DomainState.CONCURRENCY_HAZARD, DomainState.FULL_CONTENTION)
        assert ns[DomainState.FULL_RUN] == 0
        assert sum(ns) <= elapsed
    finally:
        acc.close()
        for p in spinners:
            p.kill()
            p.wait()
