"""The live figures agree with a recording made in the same run.

``runstate record`` traces the workload to disk while both live sources watch
it; the recording is then analysed (exact mode, two passes) over exactly the
window between the two live snapshots.  The live counters and the offline
analysis are independent paths to the same figures, so each state's share must
agree within one point.  The trace may miss scheduler events the kernel counters
see: what it cannot decide it shows as ``lost``, never as a state, so the
in-kernel (bpf) share of each state must lie between what the recording shows
and that plus the recording's lost share, within one point.  The tracefs source
decodes the same kind of pages as the recording: all seven shares, ``lost``
included, agree within one point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runstate.errors import EnvironmentProblem
from runstate.live.monitor import Monitor
from runstate.live.snapshot import LiveSnapshot, Selection
from runstate.model.states import DomainState
from tests.live.live_workloads import (
    BURSTY,
    DOMAIN,
    cpus_kept_busy,
    group_file,
    need_root,
    processes,
    shares,
)

pytestmark = pytest.mark.live
#: points of difference allowed per state
TOLERANCE_POINTS = 1.0


def _recorded_shares(rec: Path, groups: str, start_ns: int, end_ns: int
                     ) -> dict[DomainState, float]:
    out = subprocess.run(
        [sys.executable, "-m", "runstate", "report", str(rec), "--group", groups,
         "--format", "json", "--from", f"{start_ns / 1e9:.9f}", "--to", f"{end_ns / 1e9:.9f}"],
        capture_output=True, text=True, check=True).stdout
    found = [d for d in json.loads(out)["domains"] if d["name"] == DOMAIN]
    assert found, out[:500]
    states = found[0]["states"]
    total = sum(states[s.label]["ns"] for s in DomainState)
    assert abs(total - (end_ns - start_ns)) <= 1_000_000  # the window we asked for
    assert states["lost"]["ns"] < 0.25 * total  # enough is known for the check to bite
    return {s: 100.0 * states[s.label]["ns"] / total for s in DomainState}


def _disagreements(source: str, live: dict[DomainState, float],
                   recorded: dict[DomainState, float]) -> dict[str, float]:
    """States (and by how many points) where the live share falls outside what the
    recording allows: its share, or for the in-kernel counters its share .. + lost."""
    lost = recorded[DomainState.LOST]
    out = {}
    for state, value in recorded.items():
        if source == "bpf" and state is DomainState.LOST:
            continue
        low, high = value, value + (lost if source == "bpf" else 0.0)
        miss = max(low - live[state], live[state] - high, 0.0)
        if miss > TOLERANCE_POINTS:
            out[state.label] = round(miss, 2)
    return out


def _start(select: Selection, source: str) -> Monitor:
    try:
        return Monitor(select, source=source).start()
    except EnvironmentProblem as problem:
        pytest.skip(str(problem))


def test_live_sources_agree_with_a_recording(tmp_path: Path) -> None:
    need_root()
    rec = tmp_path / "run.rec"
    with cpus_kept_busy(), processes([BURSTY] * 3) as pids:
        groups = group_file(tmp_path, pids)
        select = Selection(pids=tuple(pids), group=groups)
        recorder = subprocess.Popen(
            [sys.executable, "-m", "runstate", "record", "-d", "6s", "-o", str(rec),
             *(a for p in pids for a in ("--pid", str(p)))],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert recorder.stderr is not None
            started = recorder.stderr.readline()  # printed once tracing is on
            assert started.startswith("Recording"), started
            monitors = [_start(select, "bpf"), _start(select, "tracefs")]
            try:
                time.sleep(0.3)
                before: list[LiveSnapshot] = [m.snapshot() for m in monitors]
                time.sleep(2.5)
                after = [m.snapshot() for m in monitors]
            finally:
                for m in monitors:
                    m.stop()
        finally:
            _, err = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, err
    for b, a in zip(before, after, strict=True):
        live = shares(b, a)
        recorded = _recorded_shares(rec, groups, b.time_ns, a.time_ns)
        assert not _disagreements(a.source, live, recorded), \
            (a.source, _disagreements(a.source, live, recorded),
             {s.label: round(v, 1) for s, v in live.items()},
             {s.label: round(v, 1) for s, v in recorded.items()})
        # the workload really mixes states, so agreeing is not trivial
        assert sum(1 for v in recorded.values() if v > 5) >= 2, recorded
