"""The tracefs live source's snapshots are placed where they are asked, even when the
kernel drops events: a tiny buffer read rarely under a switch storm overruns, the
dropped stretches are ``lost``, never a state, and a sleeping process is blocked
again once /proc has shown it asleep."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from runstate.live import tracefs_source
from runstate.live.monitor import Monitor
from runstate.live.snapshot import LiveSnapshot, Selection
from runstate.model.states import DomainState
from tests.live.capture import PING_PONG
from tests.live.live_workloads import SLEEP, need_root, processes, raised_priority

pytestmark = pytest.mark.live
STEP_NS = 400_000_000
#: the switch storm ends well before the last snapshots
STORM_S = 1.2


def _at(monitor: Monitor, moment: int) -> LiveSnapshot:
    time.sleep(max(0.0, (moment - time.monotonic_ns()) / 1e9))
    return monitor.snapshot(False, at_ns=moment)


def test_snapshots_are_placed_at_their_moments_through_overruns(monkeypatch) -> None:
    need_root()
    monkeypatch.setattr(tracefs_source, "BUFFER_KB_ALL", 8)
    monkeypatch.setattr(tracefs_source, "POLL_SECONDS", 0.5)
    with raised_priority(), processes([SLEEP]) as (sleeper,):
        storm = subprocess.Popen([sys.executable, "-c", PING_PONG.format(secs=STORM_S)])
        try:
            with Monitor(Selection(all_tasks=True, group="process"), source="tracefs") as m:
                start = time.monotonic_ns()
                moments = [start + k * STEP_NS for k in range(1, 10)]
                snaps = []
                for moment in moments:
                    snaps.append(_at(m, moment))
                    if storm.poll() is not None:  # read often enough now: no more overruns
                        monkeypatch.setattr(tracefs_source, "POLL_SECONDS", 0.02)
        finally:
            storm.kill()
            storm.wait()
    assert [s.time_ns for s in snaps] == moments
    assert snaps[-1].lost_events > 0, "the kernel overwrote events"
    intervals = [_grown(before, after, f"proc:{sleeper}")
                 for before, after in zip(snaps, snaps[1:], strict=False)]
    for (before, after), grown in zip(zip(snaps, snaps[1:], strict=False), intervals,
                                      strict=True):
        assert min(grown.values()) >= 0
        # the sleeper lived through the interval: its states add up to it exactly, and
        # it is blocked or, where the kernel dropped events, lost: never another state
        assert sum(grown.values()) == after.time_ns - before.time_ns
        assert grown[DomainState.BLOCKED] + grown[DomainState.LOST] == sum(grown.values())
    assert sum(g[DomainState.LOST] for g in intervals) > 0, "what the kernel dropped is lost"
    # after an interval with no overrun, /proc has shown it asleep: blocked again, not lost
    # for ever (an interval starts at a snapshot, the moment it is looked at)
    overruns = [after.lost_events - before.lost_events
                for before, after in zip(snaps, snaps[1:], strict=False)]
    quiet = [k for k in range(1, len(intervals)) if overruns[k - 1] == overruns[k] == 0]
    assert quiet, overruns
    assert all(intervals[k][DomainState.LOST] == 0 for k in quiet), (overruns, intervals)


def _grown(before: LiveSnapshot, after: LiveSnapshot, key: str) -> dict[DomainState, int]:
    (a,) = [d for d in before.domains if d.key == key]
    (b,) = [d for d in after.domains if d.key == key]
    return {s: b.totals_ns[s] - a.totals_ns[s] for s in DomainState}
