"""The recording directory as an input: detection, metadata checks, losses, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runstate.analysis.pipeline import Window, analyze
from runstate.errors import InputError
from runstate.model.states import DomainState
from runstate.sources.base import ReadOptions
from runstate.sources.linux.recording import RECORDING_READER, RecordingSource, load_meta
from runstate.sources.registry import open_source
from tests.conservation import assert_lifetime_from_members

FIXTURE = Path(__file__).parents[1] / "data" / "linux" / "tracefs" / "rec"


@pytest.fixture
def rec(tmp_path):
    target = tmp_path / "rec"
    shutil.copytree(FIXTURE, target)
    return target


def _edit_meta(rec: Path, **changes):
    meta = json.loads((rec / "meta.json").read_text())
    meta.update(changes)
    (rec / "meta.json").write_text(json.dumps(meta))


def test_a_recording_directory_is_detected_and_analysed(rec):
    source = open_source(str(rec), ReadOptions())
    assert source.info.format == "tracefs-recording"
    result = analyze(source)
    meta = load_meta(str(rec))
    assert (result.start_ticks, result.end_ticks) == (meta.start_ns, meta.stop_ns)
    vms = [d for d in result.domains if d.tags.get("kind") != "host-idle"]
    assert len(vms) == 1, "the pid filter keeps only the recorded process"
    # with a pid filter, the CPUs' idle time is not known: no host-idle time is claimed
    assert all(d.lifetime_ticks == 0 for d in result.domains if d not in vms)
    domain = vms[0]
    assert domain.members_seen == 4  # the main thread and three workers
    # the lifetime is bounded by the members' own times, and the main thread was there
    # from the recording's start
    assert_lifetime_from_members(domain, result.end_ticks - result.start_ticks)
    assert domain.lifetime_ticks >= max(sum(m.ticks.values()) for m in domain.members) > 0
    # no loss window: lost time only where a dropped switch left a span undecided
    spans = sum(sum(c.values()) for c in source.info.uncertain_ticks.values())
    assert domain.states[DomainState.LOST].ticks <= spans


def test_a_directory_without_metadata_is_not_a_recording(tmp_path):
    assert not RECORDING_READER.sniff(str(tmp_path), b"")
    with pytest.raises(InputError, match="no meta.json"):
        RECORDING_READER.open(str(tmp_path), None, ReadOptions())


@pytest.mark.parametrize("changes, message", [
    ({"version": 99}, "unsupported recording version"),
    ({"start_ns": "soon"}, "bad recording metadata"),
    ({"stop_ns": 0}, "stop_ns is before start_ns"),
    ({"page_size": 8192}, "disagrees with formats/header_page"),
    ({"cpus": None}, "bad recording metadata"),
    ({"events": ["sched_switch", "../../etc/x"]}, "bad event name '../../etc/x'"),
])
def test_bad_metadata_is_a_one_line_input_error(rec, changes, message):
    _edit_meta(rec, **changes)
    with pytest.raises(InputError, match=message):
        RecordingSource(str(rec), ReadOptions())


def test_broken_json_names_the_line(rec):
    (rec / "meta.json").write_text('{"format": "runstate-tracefs-recording",\n oops}')
    with pytest.raises(InputError) as err:
        RecordingSource(str(rec), ReadOptions())
    assert err.value.line == 2


def test_missing_format_file_and_cpu_file_are_named(rec):
    (rec / "formats" / "sched" / "sched_wakeup" / "format").unlink()
    with pytest.raises(InputError, match="sched_wakeup/format: missing"):
        RecordingSource(str(rec), ReadOptions())


def test_missing_cpu_file(rec):
    (rec / "cpu1.raw").unlink()
    source = RecordingSource(str(rec), ReadOptions())
    with pytest.raises(InputError, match=r"cpu1\.raw: missing"):
        list(source.batches())


def test_kernel_reported_losses_the_pages_do_not_locate_mark_the_cpu_lost(rec):
    _edit_meta(rec, cpu_stats={"1": {"overrun": 7}})
    source = RecordingSource(str(rec), ReadOptions())
    result = analyze(source)
    domain = result.domains[0]
    assert domain.states[DomainState.LOST].ticks == domain.lifetime_ticks
    assert source.info.anomalies.get("lost_events") == 7
    assert any("lost on cpu 1" in note for note in source.info.notes)


def test_reading_twice_gives_the_same_members(rec):
    source = RecordingSource(str(rec), ReadOptions())
    first = [(len(b), int(b.member.sum())) for b in source.batches()]
    second = [(len(b), int(b.member.sum())) for b in source.batches()]
    assert first == second


def test_an_unfinished_recording_reads_up_to_its_last_event(rec, run_cli):
    """A recorder killed before the end leaves ``finished: false`` and no stop time:
    the recording reads as the finished one cut at its last event."""
    meta = load_meta(str(rec))
    last = max(int(chunk.time.max()) for chunk in
               RecordingSource(str(rec), ReadOptions()).events() if len(chunk))
    assert last < meta.stop_ns
    cut = analyze(RecordingSource(str(rec), ReadOptions()),
                  Window(start_ticks=None, end_ticks=last, interval_ticks=None))
    _edit_meta(rec, finished=False, stop_ns=meta.start_ns, cpu_stats={})
    unfinished = RecordingSource(str(rec), ReadOptions())
    result = analyze(unfinished)
    assert result.end_ticks == last
    assert {d.key: {s: v.ticks for s, v in d.states.items()} for d in result.domains} == \
        {d.key: {s: v.ticks for s, v in d.states.items()} for d in cut.domains}
    shown = run_cli("report", str(rec))
    assert shown.code == 0, shown.err
    assert f"recording not finished: the recorder stopped without closing it; data up to " \
           f"{last / 1e9:.6f} s" in shown.out
