"""``runstate record`` on this host: recordings read back, agree with the kernel,
and no tracefs instance survives a normal end, SIGINT, SIGTERM or SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runstate.analysis.pipeline import Window, analyze
from runstate.errors import EnvironmentProblem
from runstate.live import procinfo
from runstate.live.recorder import record, select_pids
from runstate.live.stream import LiveSchedStream
from runstate.live.tracefs import Tracefs, TraceInstance, find_tracefs, list_instances
from runstate.model.states import DomainState
from runstate.sources.base import ReadOptions
from runstate.sources.linux.recording import RecordingSource
from runstate.sources.linux.schedevents import SchedEvents
from tests.linux import kernel_text
from tests.live.capture import PING_PONG, capture

pytestmark = pytest.mark.live

#: threads that hash (the GIL is released) and sleep: running, runnable and blocked all occur
HASHER = """
import hashlib, threading, time
data = b"x" * (1 << 20)
def work(n):
    while True:
        for _ in range(n):
            hashlib.sha256(data).digest()
        time.sleep(0.002 * n)
for n in (1, 2, 3):
    threading.Thread(target=work, args=(n,), daemon=True).start()
time.sleep(120)
"""


@pytest.fixture(scope="module")
def tracefs():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        fs = find_tracefs()
    except EnvironmentProblem as err:
        pytest.skip(f"no tracefs: {err}")
    yield fs
    # only this process's own instances: other test runs may trace at the same time
    left = {n for n in list_instances(fs) if n.startswith(f"runstate_{os.getpid()}_")}
    fs.release()
    assert not left, f"tracefs instances left behind: {left}"


@pytest.fixture
def workload():
    proc = subprocess.Popen([sys.executable, "-c", HASHER])
    time.sleep(0.3)
    yield proc
    proc.kill()
    proc.wait()


def _record_cmd(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runstate", "record", "-o", str(out),
                             *extra], stderr=subprocess.PIPE, text=True)


def _wait_recording(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "Recording" in line, line


def _ours(fs: Tracefs, pid: int) -> list[str]:
    return [n for n in list_instances(fs) if n.startswith(f"runstate_{pid}_")]


def _check_readable(out: Path) -> RecordingSource:
    source = RecordingSource(str(out), ReadOptions())
    result = analyze(source)
    assert any(d.members_seen for d in result.domains)
    return source


def test_record_then_report(tracefs, workload, tmp_path):
    out = tmp_path / "rec"
    proc = _record_cmd(out, "--pid", str(workload.pid), "-d", "1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Recorded" in err
    assert not _ours(tracefs, proc.pid)
    report = subprocess.run([sys.executable, "-m", "runstate", "report", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert f"[{workload.pid}]" in report.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_cleanly_with_a_valid_recording(tracefs, workload, tmp_path, sig):
    out = tmp_path / "rec"
    proc = _record_cmd(out, "--pid", str(workload.pid))
    _wait_recording(proc)
    assert _ours(tracefs, proc.pid), "the instance exists while recording"
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not _ours(tracefs, proc.pid)
    _check_readable(out)


def test_a_killed_runs_instance_is_removed_by_the_next_start(tracefs, workload, tmp_path):
    proc = _record_cmd(tmp_path / "rec", "--pid", str(workload.pid))
    _wait_recording(proc)
    proc.kill()
    proc.wait()
    assert proc.stderr is not None
    proc.stderr.close()
    assert _ours(tracefs, proc.pid), "SIGKILL leaves the instance behind"
    with TraceInstance.create(tracefs):
        assert not _ours(tracefs, proc.pid)


def test_decoded_events_match_the_kernels_text_rendering(tracefs, tmp_path):
    text = capture(tmp_path / "rec", 0.3, tracefs=tracefs)
    events = SchedEvents.concat(list(RecordingSource(str(tmp_path / "rec"),
                                                     ReadOptions()).events()))
    expected = kernel_text.parse(text)
    assert len(expected) > 100
    assert kernel_text.rows_of(events) == expected


def _schedstat(pid: int) -> dict[int, tuple[int, int]]:
    stats = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            run, wait, _ = (int(x) for x in f.read().split())
        stats[int(tid)] = (run, wait)
    return stats


def test_running_and_runnable_agree_with_schedstat(tracefs, workload, tmp_path):
    out = tmp_path / "rec"
    stop = threading.Event()
    recorder = threading.Thread(target=record, args=(out,), daemon=True,
                                kwargs={"pids": [workload.pid], "stop": stop,
                                        "tracefs": tracefs})
    recorder.start()
    time.sleep(0.5)
    t0, before = time.monotonic_ns(), _schedstat(workload.pid)
    time.sleep(2.0)
    t1, after = time.monotonic_ns(), _schedstat(workload.pid)
    time.sleep(0.2)
    stop.set()
    recorder.join(timeout=30)
    assert out.joinpath("meta.json").exists()
    source = RecordingSource(str(out), ReadOptions(group="thread"))
    result = analyze(source, Window(start_ticks=t0, end_ticks=t1))
    length = t1 - t0
    checked = 0
    for domain in result.domains:
        for member in domain.members:
            if not member.key.isdigit():
                continue  # host-idle CPUs
            tid = int(member.key)
            if tid not in before or tid not in after:
                continue
            run = (after[tid][0] - before[tid][0]) / length
            wait = (after[tid][1] - before[tid][1]) / length
            # what the trace could not decide (dropped switches) is lost, never guessed:
            # the kernel's own figure lies between what is shown and shown + lost
            lost = member.ticks["lost"] / length
            for shown, truth in ((member.ticks["running"] / length, run),
                                 (member.ticks["runnable"] / length, wait)):
                assert shown - 0.02 <= truth <= shown + lost + 0.02, (member, truth)
            checked += 1
    assert checked >= 3  # the three workers (the sleeping main thread may have no event)


def test_tracefs_is_mounted_when_absent_and_unmounted_after(tracefs, tmp_path):
    """In a private mount namespace, so the host's own tracefs mount is untouched."""
    out = tmp_path / "rec"
    script = (f"umount {tracefs.root} || exit 3; "
              f"{sys.executable} -m runstate record --all -d 0.3 -o {out} || exit 4; "
              "grep -c ' tracefs ' /proc/self/mounts; true")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], capture_output=True, text=True, timeout=60)
    if done.returncode == 3:
        pytest.skip("cannot unmount tracefs in a private namespace")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", "the recorder unmounts what it mounted"
    _check_readable(out)


def test_vm_names_find_qemu_processes(tracefs, tmp_path):
    fake = subprocess.Popen(["qemu-system-x86_64", "-c", "sleep 30; true", "sh",
                             "-name", "guest=testvm,debug-threads=on"], executable="/bin/sh")
    try:
        time.sleep(0.2)
        pids, vms = select_pids(vms=["testvm"])
        assert pids == [fake.pid]
        assert vms == {fake.pid: "testvm"}
        with pytest.raises(EnvironmentProblem, match="no QEMU process"):
            select_pids(vms=["no-such-vm"])
    finally:
        fake.kill()
        fake.wait()


def test_kernel_overruns_become_lost_time(tracefs, tmp_path):
    """A tiny buffer read rarely under a switch storm: the kernel overwrites events."""
    load = subprocess.Popen([sys.executable, "-c", PING_PONG.format(secs=2.5)])
    try:
        time.sleep(0.2)
        summary = record(tmp_path / "rec", pids=None, duration_s=1.5, buffer_kb=8,
                         poll_s=0.5, tracefs=tracefs)
    finally:
        load.wait(timeout=30)
    assert sum(summary.lost.values()) > 0, "the kernel reported overruns"
    source = RecordingSource(str(tmp_path / "rec"), ReadOptions())
    result = analyze(source)
    assert source.info.anomalies.get("lost_events", 0) > 0
    lost = [d.states[DomainState.LOST].ticks for d in result.domains if d.lifetime_ticks]
    assert max(lost) > 0
    for d in result.domains:
        assert sum(s.ticks for s in d.states.values()) == d.lifetime_ticks


def test_the_buffer_grows_with_the_event_rate(tracefs, tmp_path, monkeypatch):
    """A buffer too small for a switch storm doubles until a poll fills less than half."""
    from runstate.live import recorder

    monkeypatch.setattr(recorder, "BUFFER_KB_ALL", 16)
    load = subprocess.Popen([sys.executable, "-c", PING_PONG.format(secs=2.5)])
    try:
        time.sleep(0.2)
        summary = record(tmp_path / "rec", pids=None, duration_s=1.5, tracefs=tracefs)
    finally:
        load.wait(timeout=30)
    assert summary.buffer_kb > 16
    fixed = record(tmp_path / "fixed", pids=None, duration_s=0.3, buffer_kb=16,
                   tracefs=tracefs)
    assert fixed.buffer_kb == 16  # a size the user gives is kept
    result = analyze(RecordingSource(str(tmp_path / "rec"), ReadOptions()))
    for d in result.domains:
        assert sum(s.ticks for s in d.states.values()) == d.lifetime_ticks


def test_live_stream_returns_sorted_events_incrementally(tracefs, workload):
    with TraceInstance.create(tracefs) as inst:
        tids = set(procinfo.snapshot([workload.pid]))
        inst.configure(pids=tids, buffer_kb=1024)
        stream = LiveSchedStream(inst, time.monotonic_ns())
        inst.start()
        parts = []
        for _ in range(6):
            time.sleep(0.1)
            parts.append(stream.poll())
        inst.stop()
        parts.append(stream.drain())
        text = inst.read_file("trace")  # consumed already: only the header remains
    events = SchedEvents.concat(parts)
    assert len(events) > 100
    assert kernel_text.is_sorted(events)
    assert sum(1 for p in parts[:-1] if len(p)) >= 3, "events arrive while tracing"
    assert not kernel_text.parse(text)
    assert tids & set(events.pid.tolist())
