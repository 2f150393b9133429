"""The full-screen view of ``runstate top`` (rich), with esxtop-like keys.

One row per domain: members, the seven states in % of the last interval, the
mean %run and %ready of a member, the current state and for how long, and the
worst finding ``runstate advise`` would make of the interval.  Keys:
``q`` quit, ``<`` ``>`` or ``s`` change the sort column, ``r`` reverse it,
``j`` ``k`` (or arrows) move the cursor, ``m`` expand the domain under the
cursor into its members, ``p`` pause, ``?`` help.
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runstate.cli.top_rows import STATES, DomainRow, HostCpu, Interval, interval, worst_finding
from runstate.live.monitor import StopOnSignals
from runstate.model.states import DomainState

if TYPE_CHECKING:
    from runstate.cli.top_cmd import _Snapshots

_SHORT = {DomainState.FULL_RUN: "FRUN%", DomainState.FULL_CONTENTION: "FCONT%",
          DomainState.CONCURRENCY_HAZARD: "HAZ%", DomainState.BLOCKED: "BLK%",
          DomainState.PARTIAL_RUN: "PRUN%", DomainState.PARTIAL_CONTENTION: "PCONT%",
          DomainState.LOST: "LOST%"}


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    key: Callable[[DomainRow], object]


COLUMNS: tuple[Column, ...] = (
    Column("DOMAIN", lambda r: r.name),
    Column("MEMB", lambda r: r.members),
    *(Column(_SHORT[s], (lambda st: lambda r: r.share(st))(s)) for s in STATES),
    Column("%RUN", lambda r: r.run_pct),
    Column("%RDY", lambda r: r.ready_pct),
    Column("STATE", lambda r: "" if r.current_state is None else r.current_state.label),
    Column("FOR", lambda r: r.current_for_ns or 0),
    # the worst finding of `runstate advise` over the interval, e.g. fewer_vcpus:high
    Column("FINDING", worst_finding),
)
HELP = ("q quit   < > s sort column   r reverse   j k move   m members   p pause   ? help")


@dataclass(slots=True)
class ViewState:
    """What the keys change."""

    sort: int = 4  # concurrency_hazard
    reverse: bool = True
    cursor: int = 0
    #: the first row on the screen (it scrolls to keep the cursor shown)
    top: int = 0
    expanded: set[str] = field(default_factory=set)
    paused: bool = False
    help: bool = False
    quit: bool = False

    def key(self, ch: str, rows: list[DomainRow]) -> None:
        """Apply one key press."""
        if ch == "q":
            self.quit = True
        elif ch in ">s":
            self.sort = (self.sort + 1) % len(COLUMNS)
        elif ch == "<":
            self.sort = (self.sort - 1) % len(COLUMNS)
        elif ch == "r":
            self.reverse = not self.reverse
        elif ch in ("j", "\x1b[B"):
            self.cursor = min(self.cursor + 1, max(0, len(rows) - 1))
        elif ch in ("k", "\x1b[A"):
            self.cursor = max(self.cursor - 1, 0)
        elif ch == "m" and rows:
            key = rows[min(self.cursor, len(rows) - 1)].key
            self.expanded ^= {key}
        elif ch == "p":
            self.paused = not self.paused
        elif ch == "?":
            self.help = not self.help

    def order(self, iv: Interval | None) -> list[DomainRow]:
        if iv is None:
            return []
        column = COLUMNS[self.sort]
        return sorted(iv.domains, key=lambda r: (_sortable(column.key(r)), r.name),
                      reverse=self.reverse)


def _sortable(value: object) -> tuple[int, float, str]:
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _seconds(ns: int | None) -> str:
    if ns is None:
        return ""
    s = ns / 1e9
    return f"{s:.1f}s" if s < 60 else f"{s / 60:.1f}m" if s < 3600 else f"{s / 3600:.1f}h"


def _on_screen(rows: list[DomainRow], view: ViewState, lines: int
               ) -> list[tuple[int, DomainRow]]:
    """The rows that fit in ``lines`` (an expanded domain takes a line per member),
    from :attr:`ViewState.top`, moved so that the cursor's row is among them: only
    they are made into cells (a host of thousands of threads shows a screenful)."""
    def height(i: int) -> int:
        return 1 + (len(rows[i].member_rows) if rows[i].key in view.expanded else 0)

    cursor = min(view.cursor, max(0, len(rows) - 1))
    top = min(view.top, cursor)
    while top < cursor and sum(height(i) for i in range(top, cursor + 1)) > lines:
        top += 1
    view.top = top
    shown: list[tuple[int, DomainRow]] = []
    used = 0
    for i in range(top, len(rows)):
        used += height(i)
        if used > lines and shown:
            break
        shown.append((i, rows[i]))
    return shown


def render(iv: Interval | None, view: ViewState, busy: float | None, interval_ns: int,
           source: str, lines: int = 1 << 30) -> Group:
    """The whole screen for one interval, with at most ``lines`` lines of rows."""
    rows = view.order(iv)
    header = Text()
    cpus = iv.n_cpus if iv is not None else os.cpu_count() or 1
    busy_text = "?" if busy is None else f"{busy:.1f}%"
    lost = iv.lost_events if iv is not None else 0
    header.append(f"runstate top  {time.strftime('%H:%M:%S')}  ", style="bold")
    header.append(f"cpus {cpus}  busy {busy_text}  source {source}  lost events {lost}  "
                  f"interval {interval_ns / 1e9:g}s")
    if view.paused:
        header.append("  [paused]", style="reverse")
    table = Table(box=None, pad_edge=False, header_style="bold reverse", expand=False)
    for i, column in enumerate(COLUMNS):
        title = column.title + ("v" if view.reverse else "^") if i == view.sort else column.title
        table.add_column(title, justify="left" if i in (0, len(COLUMNS) - 3, len(COLUMNS) - 1)
                         else "right",
                         no_wrap=True)
    for index, row in _on_screen(rows, view, lines):
        style = "reverse" if index == view.cursor else ""
        table.add_row(*_cells(row), style=style)
        if row.key in view.expanded:
            for m in row.member_rows:
                table.add_row(f"  {m.name}", "", *([""] * len(STATES)),
                              f"{m.percent('running'):.1f}", f"{m.percent('runnable'):.1f}",
                              m.state, "", "", style="dim")
    parts: list[Text | Table] = [header, table]
    if iv is not None and iv.notes:
        parts.append(Text("; ".join(iv.notes), style="dim"))
    parts.append(Text(HELP if view.help else "? help", style="dim"))
    return Group(*parts)


def _cells(row: DomainRow) -> list[str]:
    state = "" if row.current_state is None else row.current_state.label
    return ([row.name, str(row.members)]
            + [f"{row.share(s):.1f}" for s in STATES]
            + [f"{row.run_pct:.1f}", f"{row.ready_pct:.1f}", state,
               _seconds(row.current_for_ns), worst_finding(row)])


@contextlib.contextmanager
def _keyboard(signals: StopOnSignals) -> Iterator[Callable[[float], str | None]]:
    """Single key presses from the terminal (cbreak mode, restored on exit); a wait
    for one also ends with a signal."""
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    if fd is not None:
        tty.setcbreak(fd)

    def read_key(timeout: float) -> str | None:
        if fd is None:
            signals.sleep(timeout)
            return None
        if not signals.wait([fd], timeout):
            return None
        data = os.read(fd, 8).decode("utf-8", "replace")
        return data or None

    try:
        yield read_key
    finally:
        if fd is not None and saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_screen(source: _Snapshots, interval_ns: int, count: int | None, out: TextIO) -> int:
    """Show each interval until ``q``, a signal, ``count`` intervals or the end of a
    stream.  It wakes for a key, the next interval or a signal, and draws only then."""
    console = Console(file=out)
    view = ViewState()
    host = HostCpu()
    busy: float | None = None
    current: Interval | None = None
    previous = source.take(False, None)
    shown = 0

    def draw() -> None:
        # the header, the table's header, a line of notes and the help line
        lines = max(1, console.size.height - 4)
        live.update(render(current, view, busy, interval_ns, source.name, lines), refresh=True)

    with StopOnSignals() as signals, _keyboard(signals) as read_key, \
            Live(console=console, screen=True, auto_refresh=False) as live:
        draw()
        deadline = time.monotonic_ns() + interval_ns
        while not view.quit and not signals.stop.is_set():
            pause = max(0.0, (deadline - time.monotonic_ns()) / 1e9)
            key = read_key(source.pause(pause))
            changed = key is not None
            if key is not None:
                view.key(key, view.order(current))
            if time.monotonic_ns() >= deadline:
                moment, deadline = deadline, deadline + interval_ns
                if not view.paused:
                    source.refresh()
                    snap = source.take(bool(view.expanded), moment)
                    if snap is not None:
                        current = interval(previous, snap)
                        previous = snap
                        busy = host.busy_percent()
                        shown += 1
                        changed = True
            if changed and not signals.stop.is_set():
                draw()
            if (count is not None and shown >= count) or source.finished():
                break
    return 0
