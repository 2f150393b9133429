"""``perf script`` text (default output) as a scheduler trace, plus the text-reader machinery.

Lines look like ``comm [pid/]tid [cpu] secs.frac: sched:NAME: fields``.  A
comm may contain spaces (``CPU 0/TCG``), so every pattern is anchored on what
follows the comm and matched greedily from the right.  The fields of the sched
tracepoints (``prev_comm=... ==> next_comm=...`` and the ``trace-cmd`` plugin
forms) are parsed here for the ftrace text reader too.

Text inputs are decoded once into an in-memory column table (about 30 bytes
per event) while thread names are collected; conversion then streams over it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.sources.base import ReadOptions, SourceInfo
from runstate.sources.formats import PERF_SCRIPT, PERF_SCRIPT_FIELDS
from runstate.sources.linux.sched import LostEvents, sched_batches
from runstate.sources.linux.schedevents import SchedEvents, SchedKind, TaskNames
from runstate.sources.linux.sniff import PERF_LINE, is_perf_script, missing_fields

_SWITCH = re.compile(
    r"prev_comm=(?P<pc>.*) prev_pid=(?P<pp>-?\d+) prev_prio=-?\d+ prev_state=(?P<ps>\S+) "
    r"==> next_comm=(?P<nc>.*) next_pid=(?P<np>-?\d+) next_prio=-?\d+\s*$"
)
#: trace-cmd's sched plugin: ``prev:pid [prio] S ==> next:pid [prio]``
_SWITCH_PLUGIN = re.compile(
    r"^\s*(?P<pc>.*):(?P<pp>-?\d+) \[-?\d+\] (?P<ps>\S+) ==> (?P<nc>.*):(?P<np>-?\d+) \[-?\d+\]"
)
_WAKE = re.compile(r"comm=(?P<comm>.*) pid=(?P<pid>-?\d+) prio=-?\d+")
_WAKE_PLUGIN = re.compile(r"^\s*(?P<comm>.*):(?P<pid>-?\d+) \[-?\d+\]")
_FORK = re.compile(r"comm=(?P<pcomm>.*) pid=(?P<ppid>-?\d+) child_comm=(?P<comm>.*) "
                   r"child_pid=(?P<pid>-?\d+)")
_LOST = re.compile(r"^\s*CPU:\s*(?P<cpu>\d+)\s+\[LOST (?P<n>\d+) EVENTS\]")

#: prev_state letters as the 6.x kernels' print format writes them (docs/linux.md)
_STATE_BITS = {"S": 0x01, "D": 0x02, "T": 0x04, "t": 0x08, "X": 0x10, "Z": 0x20, "P": 0x40,
               "I": 0x80, "R": 0x00, "W": 0x00, "K": 0x02, "N": 0x00}

_KINDS = {"sched_switch": SchedKind.SWITCH, "sched_wakeup": SchedKind.WAKEUP,
          "sched_wakeup_new": SchedKind.WAKEUP_NEW, "sched_process_exit": SchedKind.EXIT,
          "sched_process_fork": SchedKind.FORK, "hrtimer_expire_entry": SchedKind.SEEN}


def parse_prev_state(text: str) -> int | None:
    """The raw prev_state value of a printed one (``S``, ``R+``, ``S|D``, ``0x1``)."""
    value = 0
    if text.endswith("+"):
        value, text = 0x100, text[:-1]
    if text[:1].isdigit():
        try:
            return value | int(text, 0)
        except ValueError:
            return None
    for letter in text.split("|"):
        bit = _STATE_BITS.get(letter)
        if bit is None:
            return None
        value |= bit
    return value


def time_ns(secs: str, frac: str) -> int:
    """Exact ns of a printed ``secs.frac`` timestamp (µs or ns precision)."""
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])


@dataclass(slots=True)
class TextTable:
    """Columns of a decoded text trace, filled line by line, kept as numpy chunks."""

    time: list[int] = field(default_factory=list)
    cpu: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    pid: list[int] = field(default_factory=list)
    other: list[int] = field(default_factory=list)
    pstate: list[int] = field(default_factory=list)
    #: the task current on the CPU (the line's tid): evidence for a dropped switch
    actor: list[int] = field(default_factory=list)
    #: the actor of the line being decoded (-1: not known)
    current_actor: int = -1
    #: (index of the next event, loss) for each lost-events line
    losses: list[tuple[int, LostEvents]] = field(default_factory=list)
    names: TaskNames = field(default_factory=TaskNames)
    frozen: list[SchedEvents] = field(default_factory=list)
    n_frozen: int = 0
    events: SchedEvents | None = None

    def add(self, t: int, cpu: int, kind: int, pid: int, other: int, pstate: int) -> None:
        self.time.append(t)
        self.cpu.append(cpu)
        self.kind.append(kind)
        self.pid.append(pid)
        self.other.append(other)
        self.pstate.append(pstate)
        self.actor.append(self.current_actor)
        if len(self.time) >= 1 << 16:
            self._freeze()

    @property
    def count(self) -> int:
        return self.n_frozen + len(self.time)

    @property
    def last_time(self) -> int:
        if self.time:
            return self.time[-1]
        return int(self.frozen[-1].time[-1]) if self.frozen else 0

    def _freeze(self) -> None:
        """Move the Python lists into compact numpy columns (about 29 bytes per event)."""
        if self.time:
            self.frozen.append(SchedEvents.from_columns(self.time, self.cpu, self.kind,
                                                        self.pid, self.other, self.pstate,
                                                        self.actor))
            self.n_frozen += len(self.time)
            for column in (self.time, self.cpu, self.kind, self.pid, self.other, self.pstate,
                           self.actor):
                column.clear()

    def finish(self) -> SchedEvents:
        if self.events is None:
            self._freeze()
            self.events = SchedEvents.concat(self.frozen)
            self.frozen = []
        return self.events

    def active(self) -> set[int]:
        ev = self.finish()
        return set(np.unique(np.concatenate([ev.pid, ev.other_pid])).tolist())

    def chunks(self, rows: int) -> Iterator[SchedEvents | LostEvents]:
        ev = self.finish()
        # each loss goes where its window begins (the whole table is in memory)
        windows = [_loss_window(ev, i, loss) for i, loss in self.losses]
        placed = sorted(((int(np.searchsorted(ev.time, w.begin_ns, "right")), w)
                         for w in windows), key=lambda p: p[0])
        losses = iter(placed)
        pending = next(losses, None)
        start, n = 0, len(ev)
        while start < n or pending is not None:
            stop = min(n, start + rows)
            if pending is not None and pending[0] < stop:
                stop = pending[0]
            if stop > start:
                yield ev.take(np.arange(start, stop))
            while pending is not None and pending[0] <= stop:
                yield pending[1]
                pending = next(losses, None)
            if stop >= n and pending is None:
                break
            start = stop


def _loss_window(ev: SchedEvents, index: int, loss: LostEvents) -> LostEvents:
    """A text loss note sits where its CPU resumed: the window is from that CPU's
    last event before the note to its first event after it."""
    on_cpu = np.flatnonzero(ev.cpu == loss.cpu)
    at = int(np.searchsorted(on_cpu, index))
    begin = int(ev.time[on_cpu[at - 1]]) if at > 0 else loss.begin_ns
    after = on_cpu[at] if at < on_cpu.shape[0] else min(index, len(ev) - 1)
    end = int(ev.time[after]) if len(ev) else begin
    return LostEvents(loss.cpu, min(begin, end), max(begin, end), loss.count)


class TextParseError(Exception):
    """A line's fields do not parse; the caller adds file and line."""


def add_fields(table: TextTable, t: int, cpu: int, name: str, args: str) -> None:
    """Decode the fields of one sched tracepoint line into the table."""
    kind = _KINDS.get(name)
    if kind is None:
        return
    names = table.names.comm
    if kind is SchedKind.SWITCH:
        m = _SWITCH.search(args) or _SWITCH_PLUGIN.match(args)
        if m is None:
            raise TextParseError("sched_switch fields not understood")
        pstate = parse_prev_state(m["ps"])
        if pstate is None:
            raise TextParseError(f"unknown prev_state {m['ps']!r}")
        prev, nxt = int(m["pp"]), int(m["np"])
        names[prev] = m["pc"]
        names[nxt] = m["nc"]
        table.add(t, cpu, int(kind), prev, nxt, pstate)
    elif kind is SchedKind.SEEN:
        # a timer interrupt: the line's task was running (nothing else is read)
        if table.current_actor >= 0:
            table.add(t, cpu, int(kind), table.current_actor, -1, 0)
    elif kind is SchedKind.FORK:
        m = _FORK.search(args)
        if m is None:
            raise TextParseError("sched_process_fork fields not understood")
        names[int(m["pid"])] = m["comm"]
        table.add(t, cpu, int(kind), int(m["pid"]), int(m["ppid"]), 0)
    else:
        m = _WAKE.search(args) or _WAKE_PLUGIN.match(args)
        if m is None:
            raise TextParseError(f"{name} fields not understood")
        names[int(m["pid"])] = m["comm"]
        table.add(t, cpu, int(kind), int(m["pid"]), -1, 0)


def add_lost(table: TextTable, line: str) -> bool:
    """Handle a ``CPU:N [LOST K EVENTS]`` line; False if it is not one."""
    m = _LOST.match(line)
    if m is None:
        return False
    t = table.last_time
    table.losses.append((table.count, LostEvents(int(m["cpu"]), t, t, int(m["n"]))))
    return True


class TextSchedSource:
    """A text scheduler trace: decoded once, then converted on every ``batches()``."""

    format_name = "text"
    #: an event line; groups secs, frac, tid, tgid (optional), cpu, name, args
    line_pattern: re.Pattern[str]
    #: the error for a line that is neither an event nor ignorable
    bad_line_reason = "not an event line"
    #: the tracepoint systems (``event`` groups) read; None: the lines do not say
    event_systems: tuple[str, ...] | None = None
    #: the note when no line carries a tgid
    no_tgid_note = "no tgids: each thread counts as its own process"

    def __init__(self, path: str, stream: IO[bytes] | None, options: ReadOptions) -> None:
        self.path = path
        self._stream = stream
        self._options = options
        self.registry = Registry()
        self.info = SourceInfo(format=self.format_name, path=path, clock="trace")
        self.rereadable = stream is None
        self._table: TextTable | None = None

    def batches(self) -> Iterator[EventBatch]:
        table = self._load()
        self.info.anomalies.clear()
        self.info.initial_states.clear()
        active = table.active()
        yield from sched_batches(self.path, table.chunks(self._options.chunk_rows),
                                 table.names, self.registry, self.info, self._options,
                                 n_cpus=None, active=active)

    def _load(self) -> TextTable:
        if self._table is None:
            table = TextTable()
            with self._open() as text:
                self._parse(text, table)
            table.finish()
            self._table = table
            self._stream = None
        return self._table

    def _open(self) -> IO[str]:
        if self._stream is not None:
            return io.TextIOWrapper(self._stream, encoding="utf-8", errors="replace")
        try:
            return open(self.path, encoding="utf-8", errors="replace")
        except OSError as err:
            raise InputError(self.path, err.strerror or str(err)) from None

    def _parse(self, text: IO[str], table: TextTable) -> None:
        """Decode every line into ``table``; a line that is no event must be ignorable."""
        match = self.line_pattern.match
        last = -1
        for line_no, line in enumerate(text, start=1):
            m = match(line)
            if m is None:
                if not self._ignorable(line, table):
                    self._raise(line_no, self._bad_line(line), line)
                continue
            t = time_ns(m["secs"], m["frac"])
            if t < last:
                self._raise(line_no, "time goes backwards", line)
                continue
            last = t
            self._add_event(table, t, m, line_no, line)
        if not table.names.tgid:
            self._without_tgids()

    def _bad_line(self, line: str) -> str:
        """What is wrong with a line that is neither an event nor ignorable."""
        return self.bad_line_reason

    def _without_tgids(self) -> None:
        """No line said which process a thread belongs to."""
        self.info.notes.append(self.no_tgid_note)

    def _add_event(self, table: TextTable, t: int, m: re.Match[str], line_no: int,
                   line: str) -> None:
        tid, tgid = int(m["tid"]), m["tgid"]
        if tgid is not None and tgid.lstrip("-").isdigit() and tid > 0:
            table.names.tgid[tid] = int(tgid)
        if self.event_systems is not None and m["event"] not in self.event_systems:
            return
        table.current_actor = tid if tid >= 0 else -1
        try:
            add_fields(table, t, int(m["cpu"]), m["name"], m["args"])
        except TextParseError as err:
            self._raise(line_no, str(err) if m["args"].strip() else self._bad_line(line), line)

    def _ignorable(self, line: str, table: TextTable) -> bool:
        """Blank lines, ``#`` comments and lost-event notes (recorded as losses)."""
        stripped = line.strip()
        return not stripped or stripped.startswith("#") or add_lost(table, line) \
            or self._ignorable_other(stripped)

    def _ignorable_other(self, stripped: str) -> bool:
        """Format-specific lines that carry no events."""
        return False

    def _raise(self, line_no: int, reason: str, line: str) -> None:
        err = self._fail(line_no, reason, line)
        if err is not None:
            raise err

    def _fail(self, line_no: int, reason: str, line: str) -> InputError | None:
        """The error for a bad line; None for a cut-off last line (counted instead)."""
        if not line.endswith("\n"):
            self.info.notes.append(f"line {line_no} is cut off (file still being written?); "
                                   "ignored")
            return None
        return InputError(self.path, reason, line=line_no, record=line.strip()[:120])


#: --group values that group by thread; every other mode needs pids
THREAD_WISE_GROUPS = ("thread",)
#: --group values (None: the default) that need the process of each thread
GROUP_MODES_NEEDING_PIDS = (None, "process", "vm", "cgroup")


class PerfScriptSource(TextSchedSource):
    """``perf script`` text output of the sched tracepoints.

    perf script's default fields for tracepoints leave out the pid, so threads
    cannot be grouped into processes; rather than report each thread as a
    process of its own (figures that look right and are not), that is an
    error unless ``--group thread`` (or a group file) asks for threads.
    """

    format_name = "perf-script"
    line_pattern = PERF_LINE
    bad_line_reason = "not a perf script event line"
    event_systems = ("sched", "timer")
    no_tgid_note = ("perf script text without pids: each thread is its own domain "
                    f"(for processes, use perf script {PERF_SCRIPT_FIELDS})")

    def _bad_line(self, line: str) -> str:
        missing = missing_fields(line)
        if not missing:
            return self.bad_line_reason
        return (f"perf script output without the {', '.join(missing)} "
                f"field{'s' if len(missing) > 1 else ''}; runstate needs "
                f"perf script {PERF_SCRIPT_FIELDS}")

    def _without_tgids(self) -> None:
        if self._options.group in THREAD_WISE_GROUPS or self._options.group not in \
                GROUP_MODES_NEEDING_PIDS:
            self.info.notes.append(self.no_tgid_note)
            return
        raise InputError(self.path, "perf script output without the pid field: threads "
                         f"cannot be grouped into processes or VMs; use perf script "
                         f"{PERF_SCRIPT_FIELDS}, or --group thread")


class PerfScriptReader:
    FORMAT = PERF_SCRIPT

    def sniff(self, path: str, head: bytes) -> bool:
        return is_perf_script(path, head)

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions
             ) -> PerfScriptSource:
        return PerfScriptSource(path, stream, options)


PERF_SCRIPT_READER = PerfScriptReader()
