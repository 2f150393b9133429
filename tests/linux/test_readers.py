"""perf.data, perf script and ftrace text readers on real traces recorded on the test VM."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from runstate.errors import InputError, RunstateError
from runstate.model.states import DomainState
from runstate.sources.registry import SNIFF_BYTES, detect
from tests.conservation import assert_lifetime_from_members, assert_lifetimes

from .helpers import domain, run, timehist_runtime_ms


def figures(result):
    return {(d.key, m.key): dict(m.ticks) for d in result.domains for m in d.members}


def test_sniffing(data):
    for name, fmt in [("busy4.perf.data", "perf-data"),
                      ("busy4.perf-script.txt", "perf-script"),
                      ("busy4.perf-script-pid.txt", "perf-script"),
                      ("sleepy2.ftrace.txt", "ftrace-text")]:
        head = (data / name).read_bytes()[:SNIFF_BYTES]
        assert detect(str(data / name), head).FORMAT.name == fmt


@pytest.mark.parametrize("case", ["busy4", "sleepy3", "pinned2"])
def test_perf_data_and_perf_script_agree_exactly(data, case):
    """Same trace, two readers: identical figures, including the default grouping
    (decided from the threads that have events, not every thread perf listed)."""
    a, src_a = run(data / f"{case}.perf.data")
    b, src_b = run(data / f"{case}.perf-script-pid.txt")
    assert src_a.info.clock == "mono"
    assert figures(a) == figures(b)
    assert {d.key: {s: v.ticks for s, v in d.states.items()} for d in a.domains} == \
        {d.key: {s: v.ticks for s, v in d.states.items()} for d in b.domains}
    assert a.anomalies == b.anomalies


def test_default_perf_script_without_pids_groups_by_thread_equally(data):
    a, _ = run(data / "busy4.perf.data", group="thread")
    b, src = run(data / "busy4.perf-script.txt", group="thread")
    assert figures(a) == figures(b)
    assert any("without pids" in n for n in src.info.notes)
    with pytest.raises(InputError, match="without the pid field"):
        run(data / "busy4.perf-script.txt")


@pytest.mark.parametrize("case", ["busy4", "sleepy3"])
def test_running_time_agrees_with_perf_sched_timehist(data, case):
    result, _ = run(data / f"{case}.perf.data", group="process")
    pid = int((data / f"{case}.pid").read_text())
    reference = timehist_runtime_ms(data / f"{case}.timehist.txt")
    d = domain(result, f"rs_load[{pid}]")
    checked = 0
    for m in d.members:
        tid = int(m.key)
        if tid == pid:
            continue  # the main thread mostly waits in join; tiny totals
        # switches whose wakeup was lost too make a lost window: the truth lies
        # between what is known running and that plus the lost time
        low, high = m.ticks["running"] / 1e6, (m.ticks["running"] + m.ticks["lost"]) / 1e6
        assert low * 0.98 <= reference[tid] <= high * 1.02, (tid, low, high)
        checked += 1
    assert checked >= 3


def test_four_busy_threads_on_two_cores_are_a_concurrency_hazard(data):
    """Four spinning threads on two cores: two run while two wait and none sleeps.

    running>0, runnable>0, blocked=0 is concurrency_hazard; full_contention would
    need both cores taken by others for the whole time, full_run would need
    spare cores.  The main thread sleeping in join does not change the class.
    """
    result, _ = run(data / "busy4.perf.data", group="process")
    pid = int((data / "busy4.pid").read_text())
    d = domain(result, f"rs_load[{pid}]")
    total = d.lifetime_ticks
    assert_lifetime_from_members(d, result.end_ticks - result.start_ticks)
    hazard = d.states[DomainState.CONCURRENCY_HAZARD].ticks
    assert hazard / total > 0.95
    for m in d.members:
        if int(m.key) != pid:
            assert m.ticks["runnable"] / (m.ticks["running"] + m.ticks["runnable"]) == \
                pytest.approx(0.5, abs=0.05)


def test_thread_totals_match_their_own_schedstat(data):
    """pinned2: each thread printed its /proc/thread-self/schedstat just before ending."""
    result, _ = run(data / "pinned2.perf.data", group="process")
    lines = (data / "pinned2.schedstat.txt").read_text().split("\n")
    pid = int(lines[0])
    d = domain(result, f"rs_load[{pid}]")
    members = {int(m.key): m.ticks for m in d.members}
    for line in filter(None, lines[1:]):
        tid, exec_ns, delay_ns = (int(x) for x in line.split()[:3])
        ns = members[tid]
        assert ns["running"] == pytest.approx(exec_ns, rel=0.02)
        assert ns["runnable"] == pytest.approx(delay_ns, abs=0.02 * exec_ns)


def test_lost_wakeups_are_counted(data):
    """sleepy3: this kernel dropped CPU 1's idle-time events; each repair is counted."""
    result, src = run(data / "sleepy3.perf.data")
    assert src.info.anomalies["switch_in_time_unknown"] > 100
    assert result.anomalies["switch_in_time_unknown"] == \
        src.info.anomalies["switch_in_time_unknown"]


def test_two_sleepy_threads_pinned_to_one_cpu(data):
    """Two threads on one CPU, each running ~25 %: they can never both run.

    So full_run is (almost) impossible and the time splits between blocked
    (both asleep, ~56 % if independent) and partial_run (one runs, ~38 %), with
    brief hazard/contention when both want the CPU.
    """
    result, _ = run(data / "pinned2.perf.data", group="process")
    pid = int((data / "pinned2.pid").read_text())
    d = domain(result, f"rs_load[{pid}]")
    total = sum(s.ticks for s in d.states.values())
    share = {s: v.ticks / total for s, v in d.states.items()}
    assert share[DomainState.BLOCKED] + share[DomainState.PARTIAL_RUN] > 0.95
    assert share[DomainState.PARTIAL_RUN] > 0.3 and share[DomainState.BLOCKED] > 0.3
    assert share[DomainState.FULL_RUN] < 0.01


def test_host_idle_domain_is_tagged(data):
    result, _ = run(data / "sleepy3.perf.data")
    idle = [d for d in result.domains if d.tags.get("kind") == "host-idle"]
    assert len(idle) == 1
    assert {(m.key, m.name) for m in idle[0].members} == {("0", "cpu0"), ("1", "cpu1")}


def test_ftrace_text(data):
    result, src = run(data / "sleepy2.ftrace.txt")
    procs = [d for d in result.domains if d.name.startswith("rs_load[")]
    assert len(procs) == 1
    d = procs[0]
    assert len(d.members) == 3
    assert_lifetime_from_members(d, result.end_ticks - result.start_ticks)
    assert src.info.anomalies["switch_chain_breaks"] == _chain_breaks(data / "sleepy2.ftrace.txt")


def _chain_breaks(path):
    """Switches whose prev is not the previous switch's next on the same CPU, counted
    straight from the text."""
    import re

    last, breaks = {}, 0
    for line in path.read_text().splitlines():
        m = re.search(r"\[(\d+)\].*sched_switch: .*prev_pid=(\d+) .*next_pid=(\d+)", line)
        if m:
            cpu, prev, nxt = (int(x) for x in m.groups())
            breaks += cpu in last and last[cpu] != prev
            last[cpu] = nxt
    return breaks


def test_conservation_every_domain(data):
    result, _ = run(data / "sleepy3.perf.data")
    assert_lifetimes(result)


# ---- bad input ----------------------------------------------------------------------


def test_truncated_perf_data_at_many_points_never_crashes(data, tmp_path):
    blob = (data / "busy4.perf.data").read_bytes()
    for cut in list(range(0, 400, 37)) + list(range(400, len(blob), len(blob) // 23)):
        f = tmp_path / "cut.data"
        f.write_bytes(blob[:cut])
        try:
            result, _ = run(f, fmt="perf-data")
        except RunstateError as err:
            assert "cut.data" in str(err)
            continue
        assert_lifetimes(result)


def test_killed_writer_reads_up_to_last_record(data, tmp_path):
    """perf killed mid-write: header data size 0, no feature sections.

    The formats then come from this host's tracefs (the fixture's kernel)."""
    if not os.path.isdir("/sys/kernel/tracing/events/sched"):
        pytest.skip("no tracefs sched formats on this host")
    blob = bytearray((data / "busy4.perf.data").read_bytes())
    d_off = int.from_bytes(blob[40:48], "little")
    d_size = int.from_bytes(blob[48:56], "little")
    blob[48:56] = (0).to_bytes(8, "little")
    blob[72:104] = bytes(32)
    cut = d_off + d_size * 9 // 10  # past the first bytes of the last CPU's buffer
    f = tmp_path / "killed.data"
    f.write_bytes(bytes(blob[:cut]))
    result, src = run(f)
    assert any("not finished" in n for n in src.info.notes)
    assert_lifetimes(result)


def test_bit_flips_give_errors_or_sane_results(data, tmp_path):
    blob = (data / "busy4.perf.data").read_bytes()
    import random
    rng = random.Random(7)
    for _ in range(25):
        b = bytearray(blob)
        pos = rng.randrange(len(b))
        b[pos] ^= 1 << rng.randrange(8)
        f = tmp_path / "flip.data"
        f.write_bytes(bytes(b))
        try:
            result, _ = run(f, fmt="perf-data")
        except RunstateError as err:
            assert "flip.data" in str(err)
            continue
        assert_lifetimes(result)


def test_perf_data_without_sched_events(tmp_path):
    if shutil.which("perf") is None:
        pytest.skip("perf not installed")
    f = tmp_path / "nosched.data"
    proc = subprocess.run(["perf", "record", "-q", "-e", "task-clock", "-o", str(f), "--",
                           "true"], capture_output=True)
    if proc.returncode != 0 or not f.exists():
        pytest.skip("perf record not permitted here")
    with pytest.raises(InputError, match="sched:sched_switch.*perf record"):
        run(f)


def test_bad_text_line_names_the_line(data, tmp_path):
    lines = (data / "busy4.perf-script-pid.txt").read_text().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if i >= 10 and "prev_state=" in ln)
    lines[i] = lines[i].replace("prev_state=", "prev_stat=")
    f = tmp_path / "bad.txt"
    f.write_text("".join(lines))
    with pytest.raises(InputError, match=rf"bad.txt:{i + 1}: .*sched_switch"):
        run(f)


def test_unknown_prev_state_letter(data, tmp_path):
    lines = (data / "busy4.perf-script-pid.txt").read_text().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if "prev_state=S " in ln)
    lines[i] = lines[i].replace("prev_state=S ", "prev_state=Q ")
    f = tmp_path / "badstate.txt"
    f.write_text("".join(lines))
    with pytest.raises(InputError, match="unknown prev_state 'Q'"):
        run(f)


def test_text_truncated_mid_line(data, tmp_path):
    """A cut-off last line (file still being written) is ignored with a note."""
    text = (data / "sleepy2.ftrace.txt").read_text()
    cut = text.index("sched_switch", len(text) // 2) + 30
    f = tmp_path / "cut.txt"
    f.write_text(text[:cut])
    result, src = run(f, fmt="ftrace-text")
    assert any("cut off" in n for n in src.info.notes)
    assert_lifetimes(result)
    # the same damage in the middle of the file is an error naming the line
    g = tmp_path / "mid.txt"
    g.write_text(text[:cut] + "\n" + text[cut:])
    with pytest.raises(InputError, match=r"mid.txt:\d+: sched_switch fields not understood"):
        run(g, fmt="ftrace-text")


def test_strict_fails_on_the_chain_breaks_of_this_kernel(data):
    with pytest.raises(InputError, match="--strict"):
        run(data / "sleepy3.perf.data", strict=True)


def test_ring_buffer_loss_becomes_a_lost_window(data):
    """lossy: perf record -m 1 during a pipe benchmark; one LOST record (5800 events)
    plus perf's untimed end-of-run LOST_SAMPLES summaries of the same loss."""
    result, src = run(data / "lossy.perf.data", group="process")
    assert src.info.anomalies["lost_events"] == 5800
    assert src.info.anomalies["lost_samples_untimed"] == 5800
    assert_lifetimes(result)
    # the window starts at CPU 1's last kept event, not when the LOST record was met
    idle = next(d for d in result.domains if d.tags.get("kind") == "host-idle")
    assert idle.states[DomainState.LOST].ticks >= 3_000_000
    assert "loss_window_clamped" not in src.info.anomalies


def test_unknown_tracepoint_format_is_an_error(data, tmp_path):
    blob = (data / "busy4.perf.data").read_bytes()
    assert blob.count(b"field:long prev_state;") == 1
    f = tmp_path / "renamed.data"
    f.write_bytes(blob.replace(b"field:long prev_state;", b"field:long prev_xtate;"))
    with pytest.raises(InputError, match="has no field 'prev_state'"):
        run(f)


def test_pipe_mode_perf_data_is_refused(tmp_path):
    f = tmp_path / "pipe.data"
    f.write_bytes(b"PERFILE2" + (16).to_bytes(8, "little") + bytes(64))
    with pytest.raises(InputError, match="pipe-mode"):
        run(f)


def test_per_task_recording_is_flagged(tmp_path):
    """perf record without -a: say that the figures are estimates."""
    if shutil.which("perf") is None or os.geteuid() != 0:
        pytest.skip("needs perf and root")
    f = tmp_path / "task.data"
    proc = subprocess.run(["perf", "record", "-q", "-k", "mono", "-e",
                           "sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new",
                           "-o", str(f), "--", "sleep", "0.05"], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("perf record not permitted here")
    result, src = run(f)
    assert any("no -a" in n for n in src.info.notes)
    assert not [d for d in result.domains if d.tags.get("kind") == "host-idle"]
