"""The pipeline's window: a source's own end clips events like a user-given one."""

from __future__ import annotations

import pytest

from runstate.analysis.pipeline import Window, analyze
from runstate.engine import Engine
from runstate.errors import UsageError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import MemberState as M
from tests.engine.streams import MemorySource, assert_conserved
from tests.reference import Row, run_reference

ROWS = [Row(0, 0, 0, 2), Row(30, 0, 2, 0), Row(60, 0, 0, 1), Row(90, 0, 1, 2)]


def _source() -> MemorySource:
    registry = Registry()
    registry.member("x", "a")
    return MemorySource(registry, list(ROWS))


@pytest.mark.parametrize("one_pass", [False, True])
def test_source_end_drops_later_events(one_pass: bool) -> None:
    # a recording whose stop time (50) precedes its last events
    source = _source()
    source.info.end_ticks = 50
    result = analyze(source, Window(), one_pass=one_pass)
    assert (result.start_ticks, result.end_ticks) == (0, 50)
    assert_conserved(result)
    want = run_reference(source.registry, ROWS, start=0, end=50, two_pass=not one_pass)
    assert result.domains[0].lifetime_ticks == want.domains[0].lifetime_ticks == 50
    assert result.domains[0].members[0].ticks == want.domains[0].members[0].ticks


def test_user_end_wins_over_source_end() -> None:
    source = _source()
    source.info.end_ticks = 50
    result = analyze(source, Window(end_ticks=70))
    assert result.end_ticks == 70
    assert result.domains[0].lifetime_ticks == 70


def test_window_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(UsageError):
        analyze(_source(), Window(start_ticks=40, end_ticks=20))


def test_finish_or_snapshot_before_the_last_event_is_refused() -> None:
    registry = Registry()
    registry.member("x", "a")
    engine = Engine(registry, start_ticks=0, initial={0: M.RUNNING})
    engine.feed(EventBatch.from_columns([10], [0], [0], [2]))
    with pytest.raises(UsageError):
        engine.snapshot(5)
    with pytest.raises(UsageError):
        engine.finish(9)
    assert engine.finish(10).domains[0].lifetime_ticks == 10
