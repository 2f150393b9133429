"""Parts of ``runstate record`` that need no root: options, /proc parsing, names."""

from __future__ import annotations

import os
import threading

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
    (["-d", "0", "--all"], "duration must be positive"),
    (["-d", "1m", "--all"], "1min"),
    ([], "say what to record"),
    (["--all", "--", "true"], "do not combine"),
])
def test_option_errors(tmp_path, run_cli, argv, message):
    result = run_cli("record", *argv, "-o", str(tmp_path / "r"))
    assert result.code == 2
    assert message in result.err


def test_a_missing_pid_is_an_environment_error_naming_it(tmp_path, run_cli):
    result = run_cli("record", "--pid", "999999999", "-o", str(tmp_path / "r"))
    assert result.code == 1
    assert result.err == "runstate: error: --pid 999999999: no such process\n"


def test_an_existing_output_is_refused(tmp_path, run_cli):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("keep me")
    result = run_cli("record", "--all", "-o", str(tmp_path / "r"))
    assert result.code == 2 and "already exists" in result.err and "--force" in result.err
    # --force replaces recordings only, never another directory
    result = run_cli("record", "--all", "--force", "-o", str(tmp_path / "r"))
    assert result.code == 2 and "not a runstate recording" in result.err
    assert (tmp_path / "r" / "x").read_text() == "keep me"


def test_the_default_output_is_runstate_rec_and_kept(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runstate.rec").mkdir()
    (tmp_path / "runstate.rec" / "meta.json").write_text("{}")
    result = run_cli("record", "--all", "-d", "1s")
    assert result.code == 2 and "runstate.rec already exists" in result.err


def test_missing_parent_directories_are_not_created(tmp_path, run_cli):
    target = tmp_path / "no" / "such" / "x.rec"
    result = run_cli("record", "--all", "-d", "1s", "-o", str(target))
    assert result.code == 1
    assert "does not exist" in result.err and str(target.parent) in result.err
    assert not (tmp_path / "no").exists()


def test_a_thread_id_names_its_process():
    ready = threading.Event()
    done = threading.Event()
    tid: list[int] = []

    def worker():
        tid.append(threading.get_native_id())
        ready.set()
        done.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        ready.wait(5)
        assert tid[0] != os.getpid()
        assert procinfo.thread_group(tid[0]) == os.getpid()  # /proc/TID/status Tgid
        pids, _ = select_pids(pids=[tid[0]])
        assert pids == [os.getpid()]
    finally:
        done.set()
        thread.join()
    assert procinfo.thread_group(999999999) is None


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
