"""The Prometheus collector and its HTTP server, scraped over loopback and parsed with
prometheus_client's own parser."""

from __future__ import annotations

import http.client
import threading
import time
from collections import defaultdict

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from runstate.export.prometheus import (  # noqa: E402
    MetricsServer,
    SnapshotCollector,
    make_registry,
)
from runstate.model.states import DomainState  # noqa: E402
from tests.consumers.snapshots import BUSY, CROWDED, IDLE, ScriptedSource  # noqa: E402


@pytest.fixture
def served():
    source = ScriptedSource([BUSY, CROWDED, IDLE])
    server = MetricsServer(make_registry(SnapshotCollector(source, advice_window_ns=10**9)),
                           "127.0.0.1", 0)
    server.start()
    yield source, server
    server.close()


def request(server: MetricsServer, method: str = "GET", path: str = "/metrics"
            ) -> tuple[int, dict[str, str], bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request(method, path, body=b"x" if method in ("POST", "PUT") else None)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def scrape(server: MetricsServer) -> dict[str, dict[tuple, float]]:
    status, headers, body = request(server)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_state(samples, metric: str, domain: str) -> dict[str, float]:
    return {dict(k)["state"]: v for k, v in samples[metric].items()
            if dict(k)["domain"] == domain}


def test_families_carry_the_snapshot(served):
    source, server = served
    before = time.monotonic_ns()
    samples = scrape(server)
    after = time.monotonic_ns()
    for pattern in (BUSY, CROWDED, IDLE):
        seconds = by_state(samples, "runstate_domain_state_seconds_total", pattern.key)
        assert set(seconds) == {s.label for s in DomainState}
        # over the seven states the counters add up to the wall time since the start
        assert (before - source.started_ns) / 1e9 <= sum(seconds.values()) \
            <= (after - source.started_ns) / 1e9
        # each state as the pattern says, at some moment within the scrape
        low, _ = pattern.totals(before - source.started_ns)
        high, _ = pattern.totals(after - source.started_ns)
        for state in DomainState:
            assert low[state] / 1e9 - 1e-9 <= seconds[state.label] <= high[state] / 1e9 + 1e-9
        current = by_state(samples, "runstate_domain_current_state", pattern.key)
        assert sorted(current.values()) == [0.0] * 6 + [1.0]
        members = samples["runstate_domain_members"]
        assert members[(("domain", pattern.key), ("name", pattern.name))] == pattern.members
        missed = samples["runstate_domain_missed_changes_total"]
        assert missed[(("domain", pattern.key), ("name", pattern.name))] == pattern.missed
    per_member = samples["runstate_member_state_seconds_total"]
    assert len(per_member) == (BUSY.members + CROWDED.members + IDLE.members) * 5
    assert samples["runstate_lost_events_total"][()] == 7
    assert source.calls == 1  # one snapshot per scrape, shared by every family


def test_findings_follow_the_patterns(served):
    _, server = served
    time.sleep(0.3)  # 30 cycles of each pattern
    findings = scrape(server)["runstate_finding"]
    fired = {(dict(k)["domain"], dict(k)["rule"], dict(k)["level"]): v
             for k, v in findings.items()}
    # web: 90 % full_run -> more_vcpus critical; db: 60 % hazard -> fewer_vcpus critical
    assert set(fired) == {("vm:1", "more_vcpus", "critical"),
                          ("vm:2", "fewer_vcpus", "critical")}
    assert fired[("vm:1", "more_vcpus", "critical")] == pytest.approx(0.9, abs=0.05)


def test_counters_never_decrease_and_grow_by_wall_time(served):
    source, server = served
    previous = None
    for _ in range(5):
        t0 = time.monotonic_ns()
        samples = scrape(server)
        t1 = time.monotonic_ns()
        seconds = samples["runstate_domain_state_seconds_total"]
        if previous is not None:
            assert all(seconds[k] >= previous[0][k] for k in seconds)
            for key in (BUSY.key, CROWDED.key):
                grown = sum(v - previous[0][k] for k, v in seconds.items()
                            if dict(k)["domain"] == key)
                assert (t0 - previous[2]) / 1e9 - 1e-6 <= grown <= (t1 - previous[1]) / 1e9
        previous = (seconds, t0, t1)
        time.sleep(0.05)


def test_only_get_and_head_of_metrics_and_root(served):
    _, server = served
    status, headers, body = request(server, "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 100
    assert request(server, "GET", "/")[0] == 200
    assert request(server, "GET", "/metrics?x=1")[0] == 200
    assert request(server, "GET", "/admin")[0] == 404
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = request(server, method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert request(server, "POST", "/nothing")[0] == 404


def test_fifty_concurrent_scrapers(served):
    # 3 s against the scripted source (exact figures); test_serve_live runs 10 s on the
    # real monitor
    source, server = served
    errors: list[str] = []
    counts = [0] * 50
    end = time.monotonic() + 3

    def scraper(i: int) -> None:
        last: dict = {}
        while time.monotonic() < end:
            try:
                t0 = time.monotonic_ns()
                samples = scrape(server)
                t1 = time.monotonic_ns()
            except Exception as error:  # any failure is the finding
                errors.append(f"{type(error).__name__}: {error}")
                return
            seconds = samples["runstate_domain_state_seconds_total"]
            for key in (BUSY.key, CROWDED.key, IDLE.key):
                total = sum(v for k, v in seconds.items() if dict(k)["domain"] == key)
                if not (t0 - source.started_ns) / 1e9 - 1e-6 <= total \
                        <= (t1 - source.started_ns) / 1e9 + 1e-6:
                    errors.append(f"{key}: {total} s outside the scrape's wall time")
            if any(seconds[k] < v for k, v in last.items()):
                errors.append("a counter decreased")
            last = seconds
            counts[i] += 1

    threads = [threading.Thread(target=scraper, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert min(counts) >= 1 and sum(counts) == source.calls
    assert request(server, "POST")[0] == 405
