"""What a complete scheduler trace says, worked out slowly and plainly: the judge of the converter.

This model shares no code with :mod:`runstate.sources.linux.sched` or the
engine.  It takes every event of a trace (nothing dropped), walks it once with
a small state table, and writes down each task's state as a list of
``(time, state)`` changes; the figures are then read off those lists with
plain loops:

* ``sched_switch`` on CPU c: prev leaves as runnable (``prev_state & 0xff == 0``),
  gone (``& 0x30``) or blocked; next runs.  CPU c's idle task (pid 0) is the
  member ``cpuC`` of host idle: running while it is current, blocked otherwise.
* ``sched_wakeup`` / ``sched_wakeup_new``: a task that is neither running nor
  runnable becomes runnable.
* Before its first event a task was in the state that event leaves no doubt
  about: running before a switch-out, runnable before a switch-in, blocked
  before a wakeup, not yet there before a ``sched_wakeup_new``.  A CPU's idle
  task ran before the CPU's first switch if that switch's prev is idle.
* A domain's state at a moment follows from how many of its members run, wait
  and block (:data:`DOMAIN_TABLE`); a member that is gone does not count.

Because the trace is complete, there is no ``lost`` here: the figures are the
truth that a converter fed the same trace with events removed must bracket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SWITCH, WAKEUP, WAKEUP_NEW, EXIT, FORK, SEEN = 0, 1, 2, 3, 4, 5

RUNNING, RUNNABLE, BLOCKED, GONE = "running", "runnable", "blocked", "gone"
MEMBER_STATES = (RUNNING, RUNNABLE, BLOCKED)

#: (anyone running, anyone runnable, anyone blocked) -> domain state
DOMAIN_TABLE: dict[tuple[bool, bool, bool], str] = {
    (True, False, False): "full_run",
    (False, True, False): "full_contention",
    (True, True, False): "concurrency_hazard",
    (True, True, True): "concurrency_hazard",
    (False, False, True): "blocked",
    (True, False, True): "partial_run",
    (False, True, True): "partial_contention",
}
DOMAIN_STATES = ("full_run", "full_contention", "concurrency_hazard", "blocked",
                 "partial_run", "partial_contention")


@dataclass(frozen=True, slots=True)
class Event:
    """One tracepoint hit, as a reader decodes it."""

    time: int
    cpu: int
    kind: int
    pid: int
    other: int = -1
    prev_state: int = 0
    #: the task current on ``cpu`` when it was recorded (0: idle), -1: not known
    actor: int = -1


def idle_key(cpu: int) -> str:
    return f"cpu{cpu}"


def after_switch_out(prev_state: int) -> str:
    if prev_state & 0xFF == 0:
        return RUNNABLE
    if prev_state & 0x30:
        return GONE
    return BLOCKED


def timelines(events: Sequence[Event]) -> dict[int | str, list[tuple[int, str]]]:
    """Each task's (and each CPU's idle task's) state changes, the first at its first event."""
    changes: dict[int | str, list[tuple[int, str]]] = {}

    def set_state(task: int | str, t: int, before: str, after: str) -> None:
        if task not in changes:
            changes[task] = [(t, before)]
        changes[task].append((t, after))

    def state_of(task: int | str) -> str | None:
        return changes[task][-1][1] if task in changes else None

    for ev in sorted(events, key=lambda e: e.time):
        if ev.kind == SWITCH:
            prev = idle_key(ev.cpu) if ev.pid == 0 else ev.pid
            nxt = idle_key(ev.cpu) if ev.other == 0 else ev.other
            cpu_idle = idle_key(ev.cpu)
            if cpu_idle not in changes and cpu_idle not in (prev, nxt):
                set_state(cpu_idle, ev.time, BLOCKED, BLOCKED)
            set_state(prev, ev.time, RUNNING,
                      BLOCKED if prev == cpu_idle else after_switch_out(ev.prev_state))
            set_state(nxt, ev.time, BLOCKED if nxt == cpu_idle else RUNNABLE, RUNNING)
        elif ev.kind in (WAKEUP, WAKEUP_NEW):
            before = state_of(ev.pid)
            if before is None:
                set_state(ev.pid, ev.time, GONE if ev.kind == WAKEUP_NEW else BLOCKED,
                          RUNNABLE)
            elif before not in (RUNNING, RUNNABLE):
                set_state(ev.pid, ev.time, before, RUNNABLE)
    return changes


def state_at(changes: Sequence[tuple[int, str]], t: int) -> str:
    """The state during [t, t + 1): after every change at or before t."""
    state = changes[0][1]
    for when, what in changes:
        if when > t:
            break
        state = what
    return state


def member_times(changes: Sequence[tuple[int, str]], start: int, end: int) -> dict[str, int]:
    """ns in each state over [start, end)."""
    out = dict.fromkeys(MEMBER_STATES, 0)
    cuts = sorted({start, end} | {t for t, _ in changes if start < t < end})
    for a, b in zip(cuts, cuts[1:], strict=False):
        state = state_at(changes, a)
        if state in out:
            out[state] += b - a
    return out


def domain_times(members: Iterable[Sequence[tuple[int, str]]], start: int, end: int
                 ) -> dict[str, int]:
    """ns in each domain state over [start, end), by :data:`DOMAIN_TABLE`."""
    members = list(members)
    out = dict.fromkeys(DOMAIN_STATES, 0)
    cuts = {start, end}
    for changes in members:
        cuts |= {t for t, _ in changes if start < t < end}
    ordered = sorted(cuts)
    for a, b in zip(ordered, ordered[1:], strict=False):
        states = [state_at(c, a) for c in members]
        key = (RUNNING in states, RUNNABLE in states, BLOCKED in states)
        if key in DOMAIN_TABLE:
            out[DOMAIN_TABLE[key]] += b - a
    return out


@dataclass(frozen=True, slots=True)
class Truth:
    """Per domain and member, the ns in each state over the trace window."""

    start: int
    end: int
    members: dict[str, dict[str, dict[str, int]]]
    domains: dict[str, dict[str, int]]


def truth(events: Sequence[Event], groups: Mapping[str, Sequence[int]], cpus: Sequence[int]
          ) -> Truth:
    """The figures of a complete trace; ``groups`` maps a domain key to its tids."""
    start = min(e.time for e in events)
    end = max(e.time for e in events)
    lines = timelines(events)
    members: dict[str, dict[str, dict[str, int]]] = {}
    domains: dict[str, dict[str, int]] = {}
    everything: dict[str, dict[int | str, list[tuple[int, str]]]] = {
        key: {tid: lines[tid] for tid in tids if tid in lines} for key, tids in groups.items()}
    everything["host-idle"] = {idle_key(c): lines[idle_key(c)] for c in cpus
                               if idle_key(c) in lines}
    for key, tasks in everything.items():
        if not tasks:
            continue
        members[key] = {str(t) if isinstance(t, int) else t.removeprefix("cpu"):
                        member_times(c, start, end) for t, c in tasks.items()}
        domains[key] = domain_times(tasks.values(), start, end)
    return Truth(start, end, members, domains)
