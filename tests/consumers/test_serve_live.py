"""``runstate serve`` on this host: a real monitor, scraped over loopback."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("prometheus_client")

from tests.consumers.served import (  # noqa: E402
    domain_seconds,
    start_serve,
    tracefs_instances_of,
)

pytestmark = [pytest.mark.live]


def test_counters_grow_by_wall_time_and_the_host_is_left_as_found(root, start_load, tmp_path):
    busy = start_load(4, 300)   # 4 spinning threads on 2 cores (killed at the end)
    idle = start_load(2, 300, sleep_us=200_000)  # 1 ms of work every 200 ms
    bpf_before = set(os.listdir("/sys/fs/bpf")) if os.path.isdir("/sys/fs/bpf") else set()
    served = start_serve("--pid", str(busy.pid), "--pid", str(idle.pid), "--group",
                         str(_groups(tmp_path, busy, idle)))
    try:
        time.sleep(1.0)
        previous = None
        for _ in range(6):
            t0 = time.monotonic_ns()
            samples = served.scrape()
            t1 = time.monotonic_ns()
            now = {d: domain_seconds(samples, d) for d in ("group:busy", "group:idle")}
            for seconds in now.values():
                assert len(seconds) == 7
            if previous is not None:
                before, p0, p1 = previous
                for domain, seconds in now.items():
                    assert all(seconds[s] >= before[domain][s] for s in seconds), domain
                    grown = sum(seconds.values()) - sum(before[domain].values())
                    # the snapshots were taken within the two scrapes: grown by that wall time
                    assert (t0 - p1) / 1e9 - 0.005 <= grown <= (t1 - p0) / 1e9 + 0.005, \
                        (domain, grown, (t0 - p1) / 1e9, (t1 - p0) / 1e9)
            previous = (now, t0, t1)
            time.sleep(0.4)
        busy_s, idle_s = previous[0]["group:busy"], previous[0]["group:idle"]
        # four members on two cores can never all run at once (not even while they are
        # counted one after the other at the start: the group counts once all are)
        assert busy_s["full_run"] == 0
        assert max(busy_s, key=busy_s.__getitem__) in ("concurrency_hazard", "full_contention")
        assert max(idle_s, key=idle_s.__getitem__) == "blocked"
        members = samples["runstate_domain_members"]
        assert members[(("domain", "group:busy"), ("name", "busy"))] == 4
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(served.url, data=b"x",
                                                          method="POST"), timeout=30)
        assert refused.value.code == 405
        refused.value.close()
    finally:
        code, rest = served.stop()
    assert code == 0 and "stopped" in rest, rest
    assert tracefs_instances_of(served.proc.pid) == []
    if os.path.isdir("/sys/fs/bpf"):
        assert set(os.listdir("/sys/fs/bpf")) <= bpf_before


def _groups(tmp_path, busy, idle):
    import json

    path = tmp_path / "groups.json"
    path.write_text(json.dumps({"busy": busy.threads, "idle": idle.threads}))
    return path


def test_live_advise_judges_the_watched_time(root, start_load, tmp_path):
    import json
    import subprocess
    import sys

    busy = start_load(4, 300)
    idle = start_load(2, 300, sleep_us=200_000)
    started = time.monotonic_ns()
    result = subprocess.run(
        [sys.executable, "-m", "runstate", "advise", "--pid", str(busy.pid), "--pid",
         str(idle.pid), "--group", str(_groups(tmp_path, busy, idle)), "--duration", "2",
         "--interval", "500ms", "--format", "json"],
        capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.nice(-20))
    elapsed = (time.monotonic_ns() - started) / 1e9
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    watched = (doc["window"]["end_ns"] - doc["window"]["start_ns"]) / 1e9
    assert 2.0 <= watched <= elapsed
    domains = {d["domain"]: d for d in doc["domains"]}
    busy_rules = {f["rule"]: f for f in domains["group:busy"]["findings"]}
    # 4 members on 2 cores: never all running, always some waiting
    assert "more_vcpus" not in busy_rules
    assert busy_rules.keys() & {"fewer_vcpus", "host_overcommitted"}
    for finding in busy_rules.values():
        assert finding["evidence"]["intervals"] == 4  # 2 s in 500 ms steps
        assert finding["evidence"]["members"] == 4
    # the mostly sleeping pair never keeps both members busy (it may wait for a CPU behind
    # the spinners, which host_overcommitted would rightly say)
    idle_rules = {f["rule"] for f in domains["group:idle"]["findings"]}
    assert "more_vcpus" not in idle_rules
    assert abs(domains["group:busy"]["lifetime_ns"] / 1e9 - watched) < 0.01


@pytest.mark.slow
def test_fifty_scrapers_on_the_real_monitor(root, start_load, tmp_path):
    import threading

    busy = start_load(4, 300)
    idle = start_load(2, 300, sleep_us=200_000)
    served = start_serve("--pid", str(busy.pid), "--pid", str(idle.pid), "--group",
                         str(_groups(tmp_path, busy, idle)))
    errors: list[str] = []
    counts = [0] * 50
    end = time.monotonic() + 10

    def scraper(i: int) -> None:
        last = None
        while time.monotonic() < end:
            try:
                t0 = time.monotonic_ns()
                samples = served.scrape()
                t1 = time.monotonic_ns()
            except Exception as error:  # any failure is the finding
                errors.append(f"{type(error).__name__}: {error}")
                return
            now = {d: domain_seconds(samples, d) for d in ("group:busy", "group:idle")}
            if last is not None:
                before, p0, p1 = last
                for domain, seconds in now.items():
                    for state, value in seconds.items():
                        if value < before[domain][state]:
                            errors.append(f"{domain}: {state} decreased from "
                                          f"{before[domain][state]!r} to {value!r}")
                    grown = sum(seconds.values()) - sum(before[domain].values())
                    if not (t0 - p1) / 1e9 - 0.005 <= grown <= (t1 - p0) / 1e9 + 0.005:
                        errors.append(f"{domain}: grew {grown:.6f} s between scrapes "
                                      f"{(t0 - p1) / 1e9:.6f}..{(t1 - p0) / 1e9:.6f} s apart")
            last = (now, t0, t1)
            counts[i] += 1

    try:
        threads = [threading.Thread(target=scraper, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(served.url, data=b"x",
                                                          method="POST"), timeout=30)
        assert refused.value.code == 405
        refused.value.close()
    finally:
        code, rest = served.stop()
    assert not errors, errors[:5]
    # consecutive scrapes of one scraper were compared (hundreds on a quiet machine)
    assert sum(counts) >= 10 and max(counts) >= 2, counts
    assert code == 0 and "stopped" in rest, rest


def test_live_advise_ends_early_on_sigterm(root, start_load, tmp_path):
    import json
    import signal
    import subprocess
    import sys

    busy = start_load(4, 300)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstate", "advise", "--pid", str(busy.pid), "--duration",
         "300", "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: os.nice(-20))
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "watching 1 domain(s) for 300 s" in line, line
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, rest = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest
    doc = json.loads(out)
    watched = (doc["window"]["end_ns"] - doc["window"]["start_ns"]) / 1e9
    assert 1.0 <= watched < 120
    assert tracefs_instances_of(proc.pid) == []
