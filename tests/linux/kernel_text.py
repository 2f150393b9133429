"""The kernel's text rendering of sched events (tracefs ``trace``), as comparable tuples.

An independent view of the same buffer the raw-page decoder reads: the kernel
formats each event itself, so agreement checks offsets, timestamps and merging.
"""

from __future__ import annotations

import re

import numpy as np

from runstate.sources.linux.schedevents import SchedEvents, SchedKind

_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<cur>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+"
                   r"(?P<secs>\d+)\.(?P<usecs>\d{6}):\s+(?P<event>\w+):\s+(?P<args>.*)$")
_STATE_LETTERS = ((0x01, "S"), (0x02, "D"), (0x04, "T"), (0x08, "t"), (0x10, "X"),
                  (0x20, "Z"), (0x40, "P"), (0x80, "I"))

Row = tuple[int, int, str, int, int, str]


def _fields(args: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", args))


def parse(text: str) -> list[Row]:
    """(cpu, usecs, event, pid, other_pid, state) for every sched and timer line."""
    rows = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        f = _fields(m.group("args"))
        t = int(m.group("secs")) * 1_000_000 + int(m.group("usecs"))
        cpu, event = int(m.group("cpu")), m.group("event")
        if event == "sched_switch":
            rows.append((cpu, t, event, int(f["prev_pid"]), int(f["next_pid"]),
                         f["prev_state"]))
        elif event in ("sched_wakeup", "sched_wakeup_new", "sched_process_exit"):
            rows.append((cpu, t, event, int(f["pid"]), -1, ""))
        elif event == "sched_process_fork":
            rows.append((cpu, t, event, int(f["child_pid"]), int(f["pid"]), ""))
        elif event == "hrtimer_expire_entry":  # the interrupted task, from the line's prefix
            rows.append((cpu, t, event, int(m.group("cur")), -1, ""))
    return rows


def state_text(prev_state: int) -> str:
    """prev_state as the 6.x print fmt renders it (``R``, ``R+``, ``S``, ``D|K``...)."""
    bits = prev_state & 0xFF
    text = "|".join(c for b, c in _STATE_LETTERS if bits & b) if bits else "R"
    return text + ("+" if prev_state & 0x100 else "")


_NAMES = {SchedKind.SWITCH: "sched_switch", SchedKind.WAKEUP: "sched_wakeup",
          SchedKind.WAKEUP_NEW: "sched_wakeup_new", SchedKind.EXIT: "sched_process_exit",
          SchedKind.FORK: "sched_process_fork", SchedKind.SEEN: "hrtimer_expire_entry"}


def rows_of(events: SchedEvents) -> list[Row]:
    """The same tuples from decoded events (time rounded to µs as the kernel prints it)."""
    usecs = (events.time + 500) // 1000
    rows = []
    for cpu, t, kind, pid, other, state in zip(
            events.cpu.tolist(), usecs.tolist(), events.kind.tolist(), events.pid.tolist(),
            events.other_pid.tolist(), events.prev_state.tolist(), strict=True):
        name = _NAMES[SchedKind(kind)]
        rows.append((cpu, t, name, pid, other,
                     state_text(state) if kind == SchedKind.SWITCH else ""))
    return rows


def is_sorted(events: SchedEvents) -> bool:
    return bool(np.all(np.diff(events.time) >= 0))
