"""Exported traces parse, keep every track ordered and non-overlapping, and conserve the report."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from decimal import Decimal
from importlib import resources

import pytest
from hypothesis import HealthCheck, assume, given, settings

from runstate.analysis.pipeline import Window, analyze
from runstate.cli.main import main
from runstate.export.chrome_json import ChromeJsonWriter, micros
from runstate.export.layout import TrackNames
from runstate.export.perfetto import PerfettoWriter
from runstate.model.states import DomainState
from runstate.report.model import Clock, build_report
from runstate.report.slices import stream_slices
from tests.engine.streams import Stream, streams

perfetto_pb2 = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

SAMPLE = str(resources.files("runstate") / "data" / "qemu-demo.rec")
FILES = [SAMPLE, "tests/data/linux/lossy.perf.data", "tests/data/linux/sleepy3.perf.data",
         "tests/data/xen/c04_lost_small.trace", "tests/data/xen/c07_offline.trace",
         "tests/data/core/two_vms.csv"]


def _pftrace_tracks(data: bytes):
    """track uuid -> descriptor, and -> [(start, end, name)] from BEGIN/END pairs."""
    trace = perfetto_pb2.Trace()
    trace.ParseFromString(data)
    event = perfetto_pb2.TrackEvent
    descriptors, slices, open_ = {}, defaultdict(list), {}
    counters, instants = defaultdict(list), []
    for packet in trace.packet:
        assert packet.trusted_packet_sequence_id == 1
        if packet.HasField("track_descriptor"):
            descriptors[packet.track_descriptor.uuid] = packet.track_descriptor
            continue
        ev = packet.track_event
        assert ev.track_uuid in descriptors, "event before its track's descriptor"
        if ev.type == event.TYPE_SLICE_BEGIN:
            assert ev.track_uuid not in open_, "slices nest on one track"
            open_[ev.track_uuid] = (packet.timestamp, ev.name)
        elif ev.type == event.TYPE_SLICE_END:
            start, name = open_.pop(ev.track_uuid)
            slices[ev.track_uuid].append((start, packet.timestamp, name))
        elif ev.type == event.TYPE_COUNTER:
            counters[ev.track_uuid].append((packet.timestamp, ev.double_counter_value))
        else:
            instants.append((packet.timestamp, ev.name))
    assert not open_, "a slice was never closed"
    return descriptors, slices, counters, instants


def _assert_ordered(track) -> None:
    for (a, b, _), (c, _, _) in zip(track, track[1:], strict=False):
        assert a < b <= c, "overlap or out of order"
    if track:
        assert track[-1][0] < track[-1][1]


def _export(path: str, suffix: str, tmp_path, *extra: str) -> bytes:
    out = tmp_path / f"t.{suffix}"
    err = io.StringIO()
    assert main(["export", path, "-o", str(out), *extra], stdout=io.StringIO(),
                stderr=err) == 0, err.getvalue()
    return out.read_bytes()


def _report(path: str, *extra: str) -> dict:
    out = io.StringIO()
    assert main(["report", path, "--format", "json", *extra], stdout=out,
                stderr=io.StringIO()) == 0
    return json.loads(out.getvalue())


def _state_ns(domain: dict) -> dict[str, int]:
    return {name: stats["ns"] for name, stats in domain["states"].items()}


def _slack(path: str) -> int:
    """TSC traces convert each slice end to ns on its own: 1 ns per slice each way."""
    return 1 if path.endswith(".trace") else 0


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_pftrace_conserves_the_report(path: str, tmp_path) -> None:
    extra = ["--cpu-hz", "2.4G"] if path.endswith(".trace") else []
    descriptors, slices, counters, instants = _pftrace_tracks(
        _export(path, "pftrace", tmp_path, "--interval", "50ms", *extra))
    report = _report(path, *extra)
    processes = {d.uuid: d.process.process_name for d in descriptors.values()
                 if d.HasField("process")}
    state_tracks = {d.parent_uuid: d.uuid for d in descriptors.values()
                    if d.name == "domain state"}
    by_name = {name: uuid for uuid, name in processes.items()}
    for track in slices.values():
        _assert_ordered(track)
    for domain in report["domains"]:
        title = domain["name"] if domain["name"] == domain["domain"] else \
            f"{domain['name']} [{domain['domain']}]"
        track = slices[state_tracks[by_name[title]]]
        for state, ns in _state_ns(domain).items():
            mine = [b - a for a, b, name in track if name == state]
            assert abs(sum(mine) - ns) <= _slack(path) * len(mine), (domain["domain"], state)
            assert len(mine) == domain["states"][state]["count"], (domain["domain"], state)
    assert counters, "no counter track although --interval was given"
    for points in counters.values():
        assert all(0 <= v <= 100 + 1e-9 for _, v in points)
        assert [t for t, _ in points] == sorted(t for t, _ in points)
    lost = sum(d["states"]["lost"]["count"] for d in report["domains"])
    assert sum(1 for _, name in instants if name == "lost data") >= (1 if lost else 0)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_chrome_json_conserves_the_report(path: str, tmp_path) -> None:
    extra = ["--cpu-hz", "2.4G"] if path.endswith(".trace") else []
    data = json.loads(_export(path, "json", tmp_path, *extra))
    report = _report(path, *extra)
    events = data["traceEvents"]
    names = {(e["pid"]): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e["ph"] == "M" and e["name"] == "thread_name"}
    tracks = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            assert (e["pid"], e["tid"]) in threads
            a, b = e["args"]["start_ns"], e["args"]["end_ns"]
            # the µs decimals are exact ns
            assert Decimal(str(e["ts"])) * 1000 == a
            assert Decimal(str(e["dur"])) * 1000 == b - a
            tracks[(e["pid"], e["tid"])].append((a, b, e["name"]))
    for track in tracks.values():
        _assert_ordered(sorted(track))
        assert track == sorted(track), "slices of one track out of time order"
    pid_of = {v: k for k, v in names.items()}
    for domain in report["domains"]:
        title = domain["name"] if domain["name"] == domain["domain"] else \
            f"{domain['name']} [{domain['domain']}]"
        pid = pid_of[title]
        track = next(t for (p, tid), t in tracks.items()
                     if p == pid and threads[(p, tid)] == "domain state") \
            if domain["lifetime_ns"] else []
        for state, ns in _state_ns(domain).items():
            mine = [b - a for a, b, name in track if name == state]
            assert abs(sum(mine) - ns) <= _slack(path) * len(mine), (domain["domain"], state)


def test_micros_is_exact_for_any_ns() -> None:
    for ns in (0, 1, 999, 1000, 1001, 2_825_116_783_123, -1, -1001):
        assert Decimal(micros(ns)) * 1000 == ns


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams())
def test_random_streams_export_conserved_tracks(stream: Stream) -> None:
    assume(stream.window_start >= 0)  # .pftrace timestamps are unsigned
    source = stream.source()
    result = analyze(source, Window(stream.start, stream.end, stream.interval))
    report = build_report(result, source.info)
    names = TrackNames(source.registry)
    binary = io.BytesIO()
    writer = PerfettoWriter(binary, names, Clock())
    stream_slices(source, result, writer)
    writer.close(report)
    descriptors, slices, _, _ = _pftrace_tracks(binary.getvalue())
    text = io.StringIO()
    chrome = ChromeJsonWriter(text, names, Clock())
    stream_slices(source, result, chrome)
    chrome.close(report)
    events = json.loads(text.getvalue())["traceEvents"]
    for track in slices.values():
        _assert_ordered(track)
    for domain in result.domains:
        uuid = next(d.uuid for d in descriptors.values()
                    if d.name == "domain state" and d.parent_uuid == (1 << 40) + domain.index)
        json_track = [(e["args"]["start_ns"], e["args"]["end_ns"], e["name"]) for e in events
                      if e["ph"] == "X" and e["pid"] == domain.index + 1 and e["tid"] ==
                      domain.index + 1]
        assert json_track == slices.get(uuid, [])
        for state in DomainState:
            got = sum(b - a for a, b, name in slices.get(uuid, []) if name == state.label)
            assert got == domain.states[state].ticks


def test_export_refuses_what_it_cannot_write(tmp_path) -> None:
    err = io.StringIO()
    code = main(["export", SAMPLE, "-o", str(tmp_path / "t.txt")], stdout=io.StringIO(),
                stderr=err)
    assert code == 2 and "must end in .pftrace, .json" in err.getvalue()
    err = io.StringIO()
    code = main(["export", SAMPLE, "tests/data/core/two_vms.csv", "-o",
                 str(tmp_path / "t.json")], stdout=io.StringIO(), stderr=err)
    assert code == 2 and "one SOURCE" in err.getvalue()
    assert not list(tmp_path.iterdir())
