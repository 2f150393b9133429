"""Timeline slices against the engine's report and the slow reference model."""

from __future__ import annotations

import glob
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from runstate.analysis.pipeline import Window, analyze
from runstate.engine.timeline import Lane
from runstate.model.states import MEMBER_BUCKETS, DomainState
from runstate.report.slices import SliceStore, stream_slices
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source
from tests.engine.streams import Stream, streams
from tests.reference import (
    _episodes,
    _replay_rows,
    _start_replay,
    _timeline,
    first_pass,
    member_bucket,
)

SAMPLE = str(resources.files("runstate") / "data" / "qemu-demo.rec")
FILES = [SAMPLE, *sorted(glob.glob("tests/data/xen/*.trace")),
         *sorted(glob.glob("tests/data/linux/*.perf.data")), "tests/data/core/two_vms.csv"]


def _check_track(start, end) -> None:
    assert np.all(end > start), "a slice of zero or negative length"
    assert np.all(start[1:] >= end[:-1]), "slices overlap or go back in time"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_slices_conserve_the_report_on_real_files(path: str) -> None:
    source = open_source(path, ReadOptions(), None)
    result = analyze(source, Window())
    store = SliceStore()
    stream_slices(source, result, store)
    members = {(d.key, m.key): m for d in result.domains for m in d.members}
    for domain in result.domains:
        start, end, state = store.of(Lane.DOMAIN, domain.index)
        _check_track(start, end)
        for s in DomainState:
            assert int((end - start)[state == s].sum()) == domain.states[s].ticks, (domain.key, s)
            assert int((state == s).sum()) == domain.states[s].count, (domain.key, s)
    for index, info in enumerate(source.registry.members):
        member = members[(source.registry.domains[info.domain].key, info.key)]
        start, end, state = store.of(Lane.MEMBER, index)
        _check_track(start, end)
        got = [int((end - start)[state == b].sum()) for b in range(len(MEMBER_BUCKETS))]
        assert got == [member.ticks[b] for b in MEMBER_BUCKETS], (info.key, got)


def _reference_slices(stream: Stream):
    """Per domain and per member, the maximal (start, end, state) stretches of the model."""
    registry, rows = stream.registry, stream.rows
    s = stream.window_start
    kept = [r for r in rows if stream.end is None or r.time <= stream.end]
    e = stream.end if stream.end is not None else max([s] + [r.time for r in kept])
    resolution = first_pass(rows)
    replay = _start_replay(registry.n_members, s, resolution, stream.initial)
    segments = _replay_rows(replay, kept, s, e, resolution)
    domains = {}
    for d in range(registry.n_domains):
        ids = [m for m, info in enumerate(registry.members) if info.domain == d]
        domains[d] = [(a, b, int(st)) for a, b, st in _episodes(_timeline(ids, segments))]
    members = {}
    for m in range(registry.n_members):
        runs: list[tuple[int, int, int]] = []
        for seg in segments:
            bucket = member_bucket(seg.states[m], seg.depth)
            if bucket is None:
                continue
            code = MEMBER_BUCKETS.index(bucket)
            if runs and runs[-1][1] == seg.start and runs[-1][2] == code:
                runs[-1] = (runs[-1][0], seg.end, code)
            else:
                runs.append((seg.start, seg.end, code))
        members[m] = runs
    return domains, members


def _as_list(store: SliceStore, lane: Lane, owner: int):
    start, end, state = store.of(lane, owner)
    return list(zip(start.tolist(), end.tolist(), state.tolist(), strict=True))


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams())
def test_slices_equal_the_reference_model_on_random_streams(stream: Stream) -> None:
    window = Window(stream.start, stream.end, None)
    source = stream.source()
    result = analyze(source, window)
    store = SliceStore()
    stream_slices(source, result, store)
    domains, members = _reference_slices(stream)
    for d, want in domains.items():
        assert _as_list(store, Lane.DOMAIN, d) == want, d
    for m, want in members.items():
        assert _as_list(store, Lane.MEMBER, m) == want, m
