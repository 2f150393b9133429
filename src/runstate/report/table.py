"""The terminal table: one row per domain, % of its lifetime in each of the 7 states.

Laid out to fit 80 columns: two-line state headers, the dominant state of
each row in bold, the window and clock in the title, anomalies and host
idleness in the footer.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runstate.model.states import DomainState
from runstate.report.model import DomainRow, IntervalRow, Report

_HEADERS = {
    DomainState.FULL_RUN: "full\nrun %",
    DomainState.FULL_CONTENTION: "full\ncont %",
    DomainState.CONCURRENCY_HAZARD: "conc\nhaz %",
    DomainState.BLOCKED: "blocked\n%",
    DomainState.PARTIAL_RUN: "partial\nrun %",
    DomainState.PARTIAL_CONTENTION: "partial\ncont %",
    DomainState.LOST: "lost\n%",
}
#: contention-like states are coloured when they dominate
_STYLE = {
    DomainState.FULL_CONTENTION: "red",
    DomainState.CONCURRENCY_HAZARD: "red",
    DomainState.PARTIAL_CONTENTION: "yellow",
    DomainState.FULL_RUN: "magenta",
    DomainState.LOST: "dim",
}


def render_table(report: Report, *, color: bool = False, width: int = 80) -> str:
    """The whole table report as text (ANSI colours only if ``color``)."""
    console = Console(file=io.StringIO(), force_terminal=color, no_color=not color,
                      width=width, highlight=False, soft_wrap=False)
    console.print(_title(report))
    console.print(_domains_table(report.domains))
    if report.intervals:
        console.print(_intervals_table(report))
    for line in _footer(report):
        console.print(line)
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def _title(report: Report) -> Text:
    text = Text()
    text.append(f"{report.source}", style="bold")
    text.append(f"  ({report.format}, clock {report.clock})\n")
    text.append(f"window {_secs(report.start_ns)} .. {_secs(report.end_ns)} s, "
                f"{report.duration_ns / 1e9:.6f} s")
    if report.cpu_hz is not None:
        hz = f"{report.cpu_hz / 1e9:.6g} GHz"
        text.append(f", cpu_hz {hz}" + (" (assumed: give --cpu-hz)" if report.cpu_hz_assumed
                                         else ""))
    return text


def _domains_table(domains: tuple[DomainRow, ...]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("domain", overflow="fold", max_width=22)
    table.add_column("members", justify="right")
    table.add_column("life s", justify="right")
    for s in DomainState:
        table.add_column(_HEADERS[s], justify="right")
    for d in domains:
        table.add_row(*_domain_cells(d))
    return table


def _domain_cells(d: DomainRow) -> list[Text | str]:
    label = d.name
    members = str(d.members_seen) if d.members_expected is None else \
        f"{d.members_seen}/{d.members_expected}"
    top = max(DomainState, key=lambda s: d.states[s].ns) if d.lifetime_ns else None
    cells: list[Text | str] = [label, members, _life(d.lifetime_ns)]
    for s in DomainState:
        style = ("bold " + _STYLE.get(s, "")).strip() if s == top else ""
        cells.append(Text(f"{100 * d.share(s):.1f}", style=style))
    return cells


def _intervals_table(report: Report) -> Table:
    names = {d.domain: d.name for d in report.domains}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title="intervals")
    table.add_column("start s", justify="right")
    table.add_column("domain", max_width=14, overflow="fold")
    for s in DomainState:
        table.add_column(_HEADERS[s], justify="right")
    for interval in report.intervals:
        for cells in interval_cells(interval, names):
            table.add_row(*cells)
    return table


def interval_cells(interval: IntervalRow, names: dict[str, str]) -> list[list[str]]:
    """Cells of one interval: start, domain, % per state (domains in ``names`` only)."""
    rows = []
    for key, states in interval.domains.items():
        if key not in names:
            continue
        life = sum(states.values())
        rows.append([_secs(interval.start_ns), names[key]]
                    + [f"{100 * states[s] / life:.1f}" if life else "0.0" for s in DomainState])
    return rows


def _footer(report: Report) -> list[str]:
    lines = []
    if not report.domains:
        lines.append("no domain: no member of any group has events in the window "
                     "(see --group)")
    if report.host_idle:
        lines.append(_host_idle_line(report))
    nonzero = {k: v for k, v in report.anomalies.items() if v}
    lines.append("anomalies: " + (", ".join(f"{k} {v}" for k, v in nonzero.items())
                                  if nonzero else "none"))
    lines.extend(f"note: {n}" for n in report.notes)
    return lines


def _host_idle_line(report: Report) -> str:
    parts = []
    for d in report.host_idle:
        for m in d.members:
            idle = m.ns["running"]
            parts.append(f"cpu{m.member} {100 * idle / report.duration_ns:.1f}%"
                         if report.duration_ns else f"cpu{m.member} -")
    return "host idle: " + (", ".join(parts) if parts else "no data")


def _life(ns: int) -> str:
    seconds = ns / 1e9
    return f"{seconds:.3f}" if seconds >= 1 else f"{seconds:.6f}"


def _secs(ns: int) -> str:
    return f"{ns / 1e9:.6f}"
