"""Live cross-check: a fresh perf recording against the threads' own schedstat counters.

Each workload thread reads ``/proc/thread-self/schedstat`` (sum_exec_runtime,
run_delay) just before it ends; its running and runnable totals from the
trace must agree within 2 % (widened by the member's lost time, where the
trace lost a wakeup together with a switch).  Needs root, perf and a C compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import domain, run

pytestmark = pytest.mark.live

EVENTS = ("sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new,"
          "sched:sched_process_exit,sched:sched_process_fork")


@pytest.fixture(scope="module")
def load_binary(tmp_path_factory) -> Path:
    if os.geteuid() != 0 or shutil.which("perf") is None or shutil.which("gcc") is None:
        pytest.skip("needs root, perf and gcc")
    out = tmp_path_factory.mktemp("load") / "load"
    src = Path(__file__).resolve().parent.parent / "data" / "linux" / "load.c"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(out), str(src)], check=True)
    return out


@pytest.mark.parametrize("threads,sleep_us,cpus", [(4, 0, "0-1"), (2, 3000, "0")])
def test_trace_totals_match_schedstat(load_binary, tmp_path, threads, sleep_us, cpus):
    """Sleeping threads are pinned to CPU 0: this kernel drops the events emitted
    while CPU 1 is idle (wakeups and idle->task switches, docs/linux.md);
    their repair (counted as switch_in_time_unknown) is an upper bound of the running time."""
    data = tmp_path / "live.perf.data"
    proc = subprocess.run(["perf", "record", "-q", "-k", "mono", "-e", EVENTS, "-a", "-o",
                           str(data), "--", "taskset", "-c", cpus, str(load_binary),
                           str(threads), "1", str(sleep_us)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"perf record failed: {proc.stderr.strip()[:200]}")
    lines = proc.stdout.split("\n")
    pid = int(lines[0])
    stats = {int(f[0]): (int(f[1]), int(f[2]))
             for f in (ln.split() for ln in lines[1:] if ln.strip())}
    result, _ = run(data, group="process")  # a VM running on the host would make vm the default
    d = domain(result, f"load[{pid}]")
    members = {int(m.key): m.ticks for m in d.members}
    assert set(stats) <= set(members)
    for tid, (exec_ns, delay_ns) in stats.items():
        ns = members[tid]
        life = ns["running"] + ns["runnable"] + ns["blocked"] + ns["lost"]
        slack = 0.02 * max(exec_ns, delay_ns) + 0.002 * life
        # a switch whose wakeup was lost too leaves a lost window: the truth lies
        # between the known time and the known time plus the lost time
        for ours, truth in ((ns["running"], exec_ns), (ns["runnable"], delay_ns)):
            assert ours - slack <= truth <= ours + ns["lost"] + slack, (tid, ns, truth)


def test_recording_directory_and_perf_data_agree(load_binary, tmp_path):
    """The same threads traced by ``runstate record`` (tracefs) and ``perf record`` at
    once: per-thread running and runnable totals agree with each other and schedstat."""
    import sys
    import time

    rec = tmp_path / "host.rec"
    recorder = subprocess.Popen([sys.executable, "-m", "runstate", "record", "--all", "-d", "3",
                                 "-o", str(rec)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)
    data = tmp_path / "same.perf.data"
    proc = subprocess.run(["perf", "record", "-q", "-k", "mono", "-e", EVENTS, "-a", "-o",
                           str(data), "--", "taskset", "-c", "0", str(load_binary), "2", "1",
                           "3000"], capture_output=True, text=True)
    _, err = recorder.communicate(timeout=30)
    if proc.returncode != 0 or recorder.returncode != 0:
        pytest.skip(f"recording failed: {proc.stderr.strip()[:100]} {err.strip()[:100]}")
    lines = proc.stdout.split("\n")
    pid = int(lines[0])
    stats = {int(f[0]): (int(f[1]), int(f[2]))
             for f in (ln.split() for ln in lines[1:] if ln.strip())}
    assert pid > 0
    by_source = []
    for path in (data, rec):
        # per thread, whatever domain the reader put it in (thread groups of threads
        # born during a recording may be unknown to it)
        result, _ = run(path, group="thread")
        by_source.append({int(m.key): m.ticks for d in result.domains for m in d.members
                          if d.key.startswith("thread:")})
    for tid, (exec_ns, delay_ns) in stats.items():
        # each tracer may drop switches: the truth lies within shown .. shown + lost
        slack = 0.02 * max(exec_ns, delay_ns)
        for ns in by_source:
            assert ns[tid]["running"] - slack <= exec_ns <= \
                ns[tid]["running"] + ns[tid]["lost"] + slack, tid
            assert ns[tid]["runnable"] - slack <= delay_ns <= \
                ns[tid]["runnable"] + ns[tid]["lost"] + slack, tid


def _per_thread(path: Path) -> dict[int, dict[str, int]]:
    result, _ = run(path, group="thread")
    return {int(m.key): dict(m.ticks) for d in result.domains for m in d.members
            if d.key.startswith("thread:")}


def test_timer_events_bound_dropped_switches(load_binary, tmp_path):
    """``timer:hrtimer_expire_entry`` recorded too: its common_pid is the task its CPU
    runs, so a switch-in the tracer dropped is found within a tick.  The perf.data and
    its perf script text agree to the ns; the same text without the timer lines shows
    at least as much lost time; schedstat lies within shown .. shown + lost for both."""
    data = tmp_path / "ticks.perf.data"
    proc = subprocess.run(["perf", "record", "-q", "-k", "mono", "-e",
                           EVENTS + ",timer:hrtimer_expire_entry", "-a", "-o", str(data), "--",
                           "taskset", "-c", "0-1", str(load_binary), "3", "1", "3000"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"perf record failed: {proc.stderr.strip()[:200]}")
    lines = proc.stdout.split("\n")
    stats = {int(f[0]): (int(f[1]), int(f[2]))
             for f in (ln.split() for ln in lines[1:] if ln.strip())}
    text = subprocess.run(["perf", "script", "-i", str(data), "-F",
                           "comm,pid,tid,cpu,time,event,trace", "--ns"],
                          capture_output=True, text=True, check=True).stdout
    assert "hrtimer_expire_entry" in text
    with_ticks, without = tmp_path / "with.txt", tmp_path / "without.txt"
    with_ticks.write_text(text)
    without.write_text("".join(ln for ln in text.splitlines(keepends=True)
                               if "hrtimer_expire_entry" not in ln))
    from_data, from_text, no_ticks = (_per_thread(p) for p in (data, with_ticks, without))
    assert set(stats) <= set(from_data)
    for tid in stats:
        assert from_data[tid] == from_text[tid], tid
    assert sum(from_data[t]["lost"] for t in stats) <= sum(no_ticks[t]["lost"] for t in stats)
    for tid, (exec_ns, delay_ns) in stats.items():
        slack = 0.02 * max(exec_ns, delay_ns)
        for ns in (from_data[tid], no_ticks[tid]):
            assert ns["running"] - slack <= exec_ns <= ns["running"] + ns["lost"] + slack, \
                (tid, ns, exec_ns)
            assert ns["runnable"] - slack <= delay_ns <= ns["runnable"] + ns["lost"] + slack, \
                (tid, ns, delay_ns)
