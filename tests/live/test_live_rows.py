"""How the tracefs live source places its snapshots (no root needed).

Rows wait in a queue and a snapshot takes exactly those up to its moment; rows
that come in behind a moment already accounted are placed at it; an event of no
task makes the converter hand on what it held back, as the end of the trace
would; the engine and the converter say what the live source needs through
public accessors.
"""

from __future__ import annotations

import numpy as np

from runstate.engine.core import Engine
from runstate.live.row_queue import RowQueue
from runstate.live.tracefs_source import (
    MAX_POLL_SECONDS,
    POLL_SECONDS,
    no_task_event,
    poll_pause,
)
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import MemberState
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.linux.sched import SchedConverter
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames

SWITCH = int(SchedKind.SWITCH)
#: prev_state of a task that went to sleep (S) and of one preempted (R)
SLEEPS, PREEMPTED = 1, 0


def _batch(times: list[int], member: int = 0) -> EventBatch:
    n = len(times)
    return EventBatch.from_columns(times, [member] * n, [1] * n, [0] * n)


def test_a_snapshot_takes_exactly_the_rows_up_to_its_moment() -> None:
    rng = np.random.default_rng(7)
    times = np.sort(rng.integers(0, 10_000, 300))
    queue = RowQueue()
    for part in np.array_split(times, 7):
        queue.push(_batch(part.tolist()))
    taken: list[int] = []
    for moment in (-1, 1500, 1500, 4000, 9999, 20_000):
        rows = queue.take_until(moment, None)
        assert all(t <= moment for t in rows.time.tolist())
        taken += rows.time.tolist()
        assert taken == [t for t in times.tolist() if t <= moment]
    assert len(queue) == 0


def test_rows_behind_an_accounted_moment_are_placed_at_it() -> None:
    queue = RowQueue()
    queue.push(_batch([10, 20, 30, 40]))
    rows = queue.take_until(35, accounted_ns=25)
    assert rows.time.tolist() == [25, 25, 30]
    assert queue.late_rows == 2
    assert queue.take_until(100, accounted_ns=35).time.tolist() == [40]


def _events() -> SchedEvents:
    """Two tasks taking turns on CPU 0, a third sleeping and waking on CPU 1."""
    time = [100, 200, 300, 400, 450, 500, 600, 700]
    cpu = [0, 0, 1, 0, 1, 0, 1, 0]
    kind = [SWITCH, SWITCH, SWITCH, SWITCH, int(SchedKind.WAKEUP), SWITCH, SWITCH, SWITCH]
    prev = [10, 20, 0, 10, 30, 20, 30, 10]
    nxt = [20, 10, 30, 20, -1, 10, 0, 20]
    state = [PREEMPTED, PREEMPTED, 0, PREEMPTED, 0, PREEMPTED, SLEEPS, PREEMPTED]
    return SchedEvents.from_columns(time, cpu, kind, prev, nxt, state)


def _converter() -> SchedConverter:
    names = TaskNames(comm={10: "a", 20: "b", 30: "c"}, tgid={10: 10, 20: 20, 30: 30})
    return SchedConverter("live", Registry(), SourceInfo(format="t", path="t"), names,
                          ReadOptions(group="thread"), n_cpus=2)


def _rows(batches: list[EventBatch]) -> list[tuple[int, int, int, int]]:
    rows = EventBatch.concat(batches)
    return list(zip(rows.time.tolist(), rows.member.tolist(), rows.old_state.tolist(),
                    rows.new_state.tolist(), strict=True))


def test_an_event_of_no_task_hands_on_what_the_converter_held_back() -> None:
    events = _events()
    live = _converter()
    handed = [live.feed(events)]
    # rows from the chunk's first event on wait for the next chunk
    assert live.held_back_since_ns == 100
    handed.append(live.feed(no_task_event(800, cpu=0)))
    assert live.held_back_since_ns is None
    # the same rows as a converter that saw the end of the trace there
    ended = _converter()
    reference = [ended.feed(events), ended.finish()]
    assert _rows(handed) == _rows(reference)
    assert len(_rows(handed)) > 0


def test_the_engine_gives_a_copy_of_its_members_states() -> None:
    registry = Registry()
    for key in ("a", "b"):
        registry.member("d", key)
    engine = Engine(registry, start_ticks=0, initial={0: MemberState.BLOCKED})
    engine.feed(EventBatch.from_columns([10, 20], [1, 0], [1, 2], [0, 1]))
    states = engine.member_states()
    assert states.tolist() == [MemberState.RUNNABLE, MemberState.RUNNING]
    states[:] = MemberState.ABSENT
    assert engine.member_states().tolist() == [MemberState.RUNNABLE, MemberState.RUNNING]


def test_the_poller_reads_before_a_quarter_of_the_buffer_fills() -> None:
    # 512 pages a CPU: a quarter fills in 0.64 s at 200 pages a second, 0.128 s at 1000
    assert poll_pause(512, 200) == MAX_POLL_SECONDS  # a quiet host: the longest pause
    assert poll_pause(512, 0) == MAX_POLL_SECONDS
    assert poll_pause(512, 1000) == 0.128
    assert poll_pause(512, 100_000) == POLL_SECONDS  # never more often than that
