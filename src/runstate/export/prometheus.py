"""The Prometheus exporter: one live snapshot per scrape, served over HTTP.

Metrics (text format 0.0.4; names and units after Prometheus' naming guide):

* ``runstate_domain_state_seconds_total{domain,name,state}``: counters; over
  the seven states they grow by wall time while the domain has members, so
  ``rate()`` of one state over the sum of all is its share of the lifetime.
* ``runstate_domain_current_state{domain,name,state}``: 1 for the current state.
* ``runstate_member_state_seconds_total{domain,member,state}``: per vCPU/thread.
* ``runstate_domain_members{domain,name}``: members that exist now.
* ``runstate_domain_missed_changes_total{domain,name}``: state changes the source
  knows it did not see (bpf: switches the kernel made without the tracepoint, each
  found within a tick); the time they leave undecided is in state ``lost``.
* ``runstate_lost_events_total``: events the live source reports lost.
* ``runstate_finding{domain,name,rule,level}``: the advice over the last
  window (one minute by default); the value is the share that fired it.

The HTTP side answers only GET and HEAD of ``/metrics`` and ``/``: other paths
are 404, other methods 405.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import exposition
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from runstate.analysis.advice import DEFAULT_THRESHOLDS, Thresholds, advise
from runstate.export.figures import SlidingWindow, figures_from_snapshots
from runstate.live.snapshot import LiveSnapshot
from runstate.model.states import MEMBER_BUCKETS, DomainState

NS = 1e9

#: the classic text format: every name here is a plain Prometheus name, and servers of
#: any age read it (prometheus_client before 0.22 calls it CONTENT_TYPE_LATEST)
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)

#: what a collector reads: the monitor's current snapshot
SnapshotSource = Callable[[], LiveSnapshot]


class SnapshotCollector:
    """A custom collector: each scrape takes one snapshot and reports it whole.

    Taking a single snapshot per scrape keeps every family of one scrape
    consistent with the others (the states of a domain add up to its lifetime).
    """

    def __init__(self, source: SnapshotSource, thresholds: Thresholds = DEFAULT_THRESHOLDS,
                 advice_window_ns: int = 60_000_000_000) -> None:
        self.source = source
        self.thresholds = thresholds
        self.window = SlidingWindow.of(advice_window_ns)
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        snapshot = self.source()
        with self.lock:
            earlier = self.window.push(snapshot)
        yield from domain_families(snapshot)
        yield from member_families(snapshot)
        lost = CounterMetricFamily("runstate_lost_events",
                                   "Scheduler events the live source reported lost.")
        lost.add_metric([], float(snapshot.lost_events))
        yield lost
        yield self.findings(snapshot, earlier)

    def findings(self, snapshot: LiveSnapshot, earlier: LiveSnapshot | None) -> Metric:
        family = GaugeMetricFamily(
            "runstate_finding",
            "Advice over the last window: the share (0..1) of the lifetime that fired "
            "the rule at this level.",
            labels=["domain", "name", "rule", "level"])
        for advice in advise(figures_from_snapshots(snapshot, earlier), self.thresholds):
            for finding in advice.findings:
                family.add_metric([advice.domain, advice.name, finding.rule.value,
                                   finding.level.label], finding.share)
        return family


def domain_families(snapshot: LiveSnapshot) -> Iterator[Metric]:
    seconds = CounterMetricFamily(
        "runstate_domain_state_seconds",
        "Time each domain spent in each domain runstate; over the seven states it grows "
        "by wall time while the domain has members.",
        labels=["domain", "name", "state"], unit="seconds")
    current = GaugeMetricFamily("runstate_domain_current_state",
                                "1 for the domain runstate the domain is in now.",
                                labels=["domain", "name", "state"])
    members = GaugeMetricFamily("runstate_domain_members",
                                "Members (vCPUs or threads) the domain has now.",
                                labels=["domain", "name"])
    missed = CounterMetricFamily(
        "runstate_domain_missed_changes",
        "State changes of the domain's members the source knows it did not see; the "
        "time they leave undecided is counted in state lost.", labels=["domain", "name"])
    for domain in snapshot.domains:
        for state in DomainState:
            labels = [domain.key, domain.name, state.label]
            seconds.add_metric(labels, domain.totals_ns.get(state, 0) / NS)
            current.add_metric(labels, 1.0 if domain.current_state is state else 0.0)
        members.add_metric([domain.key, domain.name], float(domain.members))
        missed.add_metric([domain.key, domain.name], float(domain.missed))
    yield seconds
    yield current
    yield members
    yield missed


def member_families(snapshot: LiveSnapshot) -> Iterator[Metric]:
    seconds = CounterMetricFamily(
        "runstate_member_state_seconds",
        "Time each member (vCPU or thread) spent running, runnable, blocked, offline or "
        "lost.", labels=["domain", "member", "state"], unit="seconds")
    for domain in snapshot.domains:
        for member in domain.member_rows:
            for bucket in MEMBER_BUCKETS:
                seconds.add_metric([domain.key, member.key, bucket],
                                   member.totals_ns.get(bucket, 0) / NS)
    yield seconds


def make_registry(collector: SnapshotCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class MetricsServer:
    """A small threaded HTTP server for ``/metrics``; ``close()`` stops it."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        handler = _handler_for(registry)
        server_class = _IPv6Server if ":" in host else _Server
        self.httpd = server_class((host, port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="runstate-serve",
                                       kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    #: room for many scrapers at once (socketserver's default of 5 drops connections,
    #: which then wait a whole second for the SYN to be resent)
    request_queue_size = 128
    daemon_threads = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


PATHS = ("/metrics", "/")

INDEX = (b"<html><head><title>runstate exporter</title></head><body>"
         b"<h1>runstate exporter</h1><p><a href=\"/metrics\">metrics</a></p></body></html>\n")


def _handler_for(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "runstate"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(with_body=False)

        def _refuse(self) -> None:
            if self._path() in PATHS:
                self.send_response(405)
                self.send_header("Allow", "GET, HEAD")
            else:
                self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

        def _path(self) -> str:
            return self.path.split("?", 1)[0]

        def _answer(self, with_body: bool) -> None:
            path = self._path()
            if path not in PATHS:
                self._refuse()
                return
            if path == "/metrics":
                body, kind = generate_latest(registry), CONTENT_TYPE
            else:
                body, kind = INDEX, "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes are not worth a line each

    return Handler
