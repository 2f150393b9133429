"""Parts of ``runstate record`` that need no root: options, /proc parsing, names."""

from __future__ import annotations

import os

import pytest

from runstate.errors import EnvironmentProblem
from runstate.live import procinfo, tracefs
from runstate.live.recorder import record, select_pids


@pytest.fixture
def not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def test_not_root_is_a_clear_message(not_root, tmp_path):
    with pytest.raises(EnvironmentProblem, match="needs root"):
        record(tmp_path / "r", pids=None, duration_s=1)


def test_not_root_from_the_command_line(not_root, tmp_path, run_cli):
    result = run_cli("record", "--all", "-d", "1", "-o", str(tmp_path / "r"))
    assert result.code == 1
    assert "runstate record needs root (tracefs)" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("argv, message", [
    (["--all", "--pid", "1"], "do not combine"),
    (["-d", "0", "--all"], "--duration must be positive"),
    ([], "say what to record"),
    (["--pid", "999999999"], "no such process"),
])
def test_option_errors(tmp_path, run_cli, argv, message):
    result = run_cli("record", *argv, "-o", str(tmp_path / "r"))
    assert result.code == 2
    assert message in result.err


def test_an_existing_output_is_refused(tmp_path, run_cli):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("keep me")
    result = run_cli("record", "--all", "-o", str(tmp_path / "r"))
    assert result.code == 2 and "already exists" in result.err


def test_pid_selection_keeps_the_process():
    pids, vms = select_pids(pids=[os.getpid()])
    assert pids == [os.getpid()] and vms == {}
    assert select_pids(all_tasks=True)[0] is None


@pytest.mark.parametrize("value, name", [
    ("guest=web1,debug-threads=on", "web1"),
    ("web1", "web1"),
    ("web1,process=qemu-web1", "web1"),
    ("process=x,guest=a,,b", "a,b"),
    ("debug-threads=on", None),
])
def test_qemu_name_option(value, name):
    assert procinfo.parse_name_option(value) == name


def test_thread_info_of_this_process():
    threads = procinfo.snapshot([os.getpid()])
    me = threads[os.getpid()]
    assert me.tgid == os.getpid()
    assert me.state == "R"  # reading its own stat, it runs
    assert me.comm


def test_cgroup_prefers_the_unified_hierarchy():
    text = "12:cpu,cpuacct:/v1/path\n0::/v2/path\n"
    assert procinfo._cgroup(text) == "/v2/path"
    assert procinfo._cgroup("4:cpu,cpuacct:/only-v1\n") == "/only-v1"


def test_instance_names_and_staleness():
    name = tracefs.instance_name()
    assert name.startswith(f"runstate_{os.getpid()}_")
    assert not tracefs.is_stale(name)
    assert tracefs.is_stale("runstate_999999999_1")
    assert tracefs.is_stale("runstate_999999999")
    assert not tracefs.is_stale("runstate_mine"), "names not made by runstate are left alone"
    start = tracefs.process_start_ticks(os.getpid())
    assert tracefs.is_stale(f"runstate_{os.getpid()}_{(start or 0) + 1}"), "a reused pid"


def test_stats_parsing():
    text = ("entries: 12\noverrun: 3\ncommit overrun: 1\nbytes: 4096\n"
            "oldest event ts:  1234.5\nnow ts:  1235.0\ndropped events: 2\nread events: 40\n")
    stats = tracefs.parse_stats(text)
    assert (stats.entries, stats.overrun, stats.commit_overrun, stats.dropped,
            stats.read_events) == (12, 3, 1, 2, 40)
    assert stats.lost == 6
