"""The terminal table: one row per domain, % of its lifetime in each of the 7 states.

A host-wide recording has hundreds of domains, most of them kernel threads
that only slept.  So the rows come sorted by what needs attention (most
contention first), domains that were only blocked fold into one summary line,
and ``--top`` / ``--match`` narrow the rest.  Each row stays on one line:
piped output is never wrapped or cut (full names, fixed columns, one
precision per column) so ``grep`` and ``awk`` see whole rows; on a terminal
(or with ``COLUMNS`` / ``--width``) long names are shortened and, if still too
wide, the least important columns are left out, with a note saying so.

Besides the state shares, the table shows what esxtop and ``perf sched``
users look for: the p95 length of a contention episode and %RDY, the mean
share of its lifetime a member spent runnable but not running.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from runstate.errors import UsageError
from runstate.model.states import DomainState
from runstate.report.model import (
    DomainRow,
    IntervalRow,
    Report,
    anomaly_line,
    host_idle_line,
    uncertain_line,
)

#: the states that mean "waiting for a CPU"; the default sort adds their shares
CONTENTION_STATES = (DomainState.FULL_CONTENTION, DomainState.CONCURRENCY_HAZARD,
                     DomainState.PARTIAL_CONTENTION)

#: (key, two header lines) per state; the key is what ``--sort`` accepts
_STATE_HEADERS = {
    DomainState.FULL_RUN: ("full_run", ("full", "run %")),
    DomainState.FULL_CONTENTION: ("full_cont", ("full", "cont %")),
    DomainState.CONCURRENCY_HAZARD: ("conc_haz", ("conc", "haz %")),
    DomainState.BLOCKED: ("blocked", ("blocked", "%")),
    DomainState.PARTIAL_RUN: ("partial_run", ("partial", "run %")),
    DomainState.PARTIAL_CONTENTION: ("partial_cont", ("partial", "cont %")),
    DomainState.LOST: ("lost", ("lost", "%")),
}
#: colour of the dominant state of a row (terminal only)
_STYLE = {
    DomainState.FULL_CONTENTION: "1;31",
    DomainState.CONCURRENCY_HAZARD: "1;31",
    DomainState.PARTIAL_CONTENTION: "1;33",
    DomainState.FULL_RUN: "1;35",
    DomainState.LOST: "2",
}
#: the narrowest a shortened domain name gets before columns are dropped
MIN_NAME_WIDTH = 12
GAP = "  "


@dataclass(frozen=True, slots=True)
class TableOptions:
    """How the table chooses, orders and lays out rows."""

    #: a column key (see :func:`sort_keys`); None: most contention first
    sort: str | None = None
    top: int | None = None
    match: re.Pattern[str] | None = None
    #: show domains that were only blocked instead of folding them
    all_rows: bool = False
    wide: bool = False
    color: bool = False
    #: None: never shorten or drop anything (piped output)
    width: int | None = None
    #: the ``--group`` asked for (None: the reader's default), for the "no domain" hint
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: header, how a domain fills it, and how it sorts."""

    key: str
    header: tuple[str, str]
    cell: Callable[[DomainRow], str]
    #: the sort value (bigger first), or None for the name column (alphabetical)
    value: Callable[[DomainRow], float] | None
    left: bool = False
    state: DomainState | None = None
    #: lower drops first when the table does not fit (0: never dropped)
    keep: int = 0


# ---- per-domain figures -------------------------------------------------------

def contention_share(d: DomainRow) -> float:
    """Share of the lifetime in full_contention, concurrency_hazard or partial_contention."""
    return sum(d.share(s) for s in CONTENTION_STATES)


def contention_p95_ns(d: DomainRow) -> int | None:
    """The largest p95 episode length among the contention states that occurred."""
    values = [d.states[s].p95_ns for s in CONTENTION_STATES if d.states[s].count]
    return max(values) if values else None


def mean_member_share(d: DomainRow, bucket: str) -> float | None:
    """Mean over members of (time in ``bucket``) / domain lifetime (esxtop's %RDY, %RUN)."""
    if not d.members or not d.lifetime_ns:
        return None
    return sum(m.ns[bucket] for m in d.members) / len(d.members) / d.lifetime_ns


def only_blocked(d: DomainRow) -> bool:
    """True for a domain that lived and spent all of it blocked."""
    return d.lifetime_ns > 0 and d.states[DomainState.BLOCKED].ns == d.lifetime_ns


# ---- columns ------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def _members(d: DomainRow) -> str:
    return str(d.members_seen) if d.members_expected is None else \
        f"{d.members_seen}/{d.members_expected}"


def _state_column(state: DomainState) -> Column:
    key, header = _STATE_HEADERS[state]
    return Column(key, header, lambda d: _pct(d.share(state)), lambda d: d.share(state),
                  state=state)


def _p95_column(key: str, header: tuple[str, str], state: DomainState, keep: int) -> Column:
    def p95(d: DomainRow) -> int | None:
        return d.states[state].p95_ns if d.states[state].count else None
    return Column(key, header, lambda d: _ms(p95(d)), lambda d: float(p95(d) or 0), keep=keep)


def _columns(wide: bool, life_decimals: int) -> list[Column]:
    columns = [
        Column("domain", ("", "domain"), lambda d: d.name, None, left=True),
        Column("members", ("", "members"), _members, lambda d: d.members_seen, keep=3),
        Column("life", ("", "life s"), lambda d: f"{d.lifetime_ns / 1e9:.{life_decimals}f}",
               lambda d: d.lifetime_ns, keep=4),
    ]
    columns += [_state_column(s) for s in DomainState]
    columns += [
        Column("cont_p95", ("cont p95", "ms"), lambda d: _ms(contention_p95_ns(d)),
               lambda d: float(contention_p95_ns(d) or 0), keep=2),
        Column("rdy", ("", "rdy %"), lambda d: _pct(mean_member_share(d, "runnable")),
               lambda d: mean_member_share(d, "runnable") or 0.0, keep=1),
    ]
    if wide:
        columns += [
            Column("run", ("", "run %"), lambda d: _pct(mean_member_share(d, "running")),
                   lambda d: mean_member_share(d, "running") or 0.0, keep=1),
            Column("changes", ("", "changes"), lambda d: str(d.changes),
                   lambda d: d.changes, keep=1),
            _p95_column("full_cont_p95", ("fcont p95", "ms"), DomainState.FULL_CONTENTION, 1),
            _p95_column("conc_haz_p95", ("haz p95", "ms"), DomainState.CONCURRENCY_HAZARD, 1),
            _p95_column("partial_cont_p95", ("pcont p95", "ms"),
                        DomainState.PARTIAL_CONTENTION, 1),
            _p95_column("blocked_p95", ("blocked p95", "ms"), DomainState.BLOCKED, 1),
            Column("lost_spans", ("lost", "spans"), lambda d: str(d.lost_intervals),
                   lambda d: d.lost_intervals, keep=1),
        ]
    return columns


#: other spellings ``--sort`` accepts: the states' full names, and "contention"
_SORT_ALIASES = {
    "full_contention": "full_cont", "concurrency_hazard": "conc_haz",
    "partial_contention": "partial_cont", "name": "domain", "lifetime": "life",
    "ready": "rdy", "contention": "contention",
}


def sort_keys(wide: bool = True) -> list[str]:
    """The column names ``--sort`` accepts (the header's words joined by ``_``)."""
    return [c.key for c in _columns(wide, 3)] + ["contention"]


def resolve_sort(text: str) -> str:
    """The column key for a ``--sort`` argument as a user types it (``"full cont %"`` too)."""
    key = re.sub(r"[\s\-]+", "_", text.strip().lower().replace("%", "")).strip("_")
    key = re.sub(r"_(s|ms)$", "", key)
    key = _SORT_ALIASES.get(key, key)
    if key not in sort_keys():
        raise UsageError(f"--sort {text!r}: not a column; one of: {', '.join(sort_keys())}")
    return key


# ---- choosing and ordering rows -----------------------------------------------

def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Order names with numbers in numeric order: ``[2]`` before ``[10]``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", text) if part)


@dataclass(slots=True)
class Selection:
    """The rows to show and what was left out (for the footer)."""

    rows: list[DomainRow]
    total: int
    matched: int
    folded_blocked: int = 0
    beyond_top: int = 0


def select_rows(domains: Iterable[DomainRow], options: TableOptions) -> Selection:
    """Filter (``--match``), fold only-blocked domains, sort, cut at ``--top``."""
    domains = list(domains)
    rows = [d for d in domains if options.match is None or options.match.search(d.name)]
    selection = Selection([], len(domains), len(rows))
    if not options.all_rows:
        selection.folded_blocked = sum(1 for d in rows if only_blocked(d))
        rows = [d for d in rows if not only_blocked(d)]
    rows = sorted(rows, key=lambda d: natural_key(d.domain))
    rows = sorted(rows, key=lambda d: natural_key(d.name))
    key = options.sort or "contention"
    if key != "domain":
        value = _sort_value(key)
        rows = sorted(rows, key=value, reverse=True)
    if options.top is not None and len(rows) > options.top:
        selection.beyond_top = len(rows) - options.top
        rows = rows[:options.top]
    selection.rows = rows
    return selection


def _sort_value(key: str) -> Callable[[DomainRow], float]:
    if key == "contention":
        return contention_share
    for column in _columns(True, 3):
        if column.key == key and column.value is not None:
            return column.value
    raise UsageError(f"--sort {key!r}: not a column")


# ---- layout -------------------------------------------------------------------

@dataclass(slots=True)
class Grid:
    """Cells laid out in fixed-width columns; rendering never wraps a row."""

    columns: list[Column]
    cells: list[list[str]]
    widths: list[int]

    @classmethod
    def of(cls, columns: list[Column], rows: list[DomainRow]) -> Grid:
        cells = [[c.cell(d) for c in columns] for d in rows]
        widths = [max([len(c.header[0]), len(c.header[1])] + [len(r[i]) for r in cells])
                  for i, c in enumerate(columns)]
        return cls(columns, cells, widths)

    @property
    def width(self) -> int:
        return sum(self.widths) + len(GAP) * (len(self.widths) - 1)

    def fit(self, width: int | None) -> list[str]:
        """Shorten names, then drop columns, until the grid fits; returns the dropped keys."""
        dropped: list[str] = []
        if width is None:
            return dropped
        natural = self.widths[0]
        self.widths[0] = max(min(natural, MIN_NAME_WIDTH), natural - (self.width - width))
        while self.width > width:
            candidates = [i for i, c in enumerate(self.columns) if c.keep > 0]
            if not candidates:
                break
            i = min(candidates, key=lambda i: (self.columns[i].keep, -i))
            dropped.append(self.columns[i].key)
            del self.columns[i], self.widths[i]
            for row in self.cells:
                del row[i]
        if self.width < width:  # room freed by a dropped column goes back to the names
            self.widths[0] = min(natural, self.widths[0] + width - self.width)
        return dropped

    def lines(self, color: bool, styles: list[dict[int, str]] | None = None) -> list[str]:
        header = [self._line(list(c.header[k] for c in self.columns)) for k in (0, 1)]
        out = [h for h in header if h.strip()]
        out.append("─" * self.width)
        for n, row in enumerate(self.cells):
            style = styles[n] if styles and color else {}
            out.append(self._line(row, style))
        return out

    def _line(self, cells: list[str], style: dict[int, str] | None = None) -> str:
        parts = []
        for i, (text, w) in enumerate(zip(cells, self.widths, strict=True)):
            text = _shorten(text, w)
            padded = text.ljust(w) if self.columns[i].left else text.rjust(w)
            if style and i in style:
                padded = f"\x1b[{style[i]}m{padded}\x1b[0m"
            parts.append(padded)
        return GAP.join(parts).rstrip()


def _shorten(text: str, width: int) -> str:
    """Cut a too-long name in the middle (its start and its ``[pid]`` both stay)."""
    if len(text) <= width:
        return text
    if width < 4:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail:]


def _row_styles(columns: list[Column], rows: list[DomainRow]) -> list[dict[int, str]]:
    """Per row: the dominant state's column, bold (coloured for contention)."""
    styles = []
    for d in rows:
        top = max(DomainState, key=lambda s: d.states[s].ns) if d.lifetime_ns else None
        style = {i: _STYLE.get(top, "1") for i, c in enumerate(columns)
                 if top is not None and c.state is top}
        styles.append(style)
    return styles


# ---- the whole report ---------------------------------------------------------

def render_table(report: Report, *, color: bool = False, width: int | None = None,
                 options: TableOptions | None = None) -> str:
    """The whole table report as text (ANSI colours only if ``color``)."""
    options = options or TableOptions(color=color, width=width)
    selection = select_rows(report.domains, options)
    decimals = 3 if any(d.lifetime_ns >= 1_000_000_000 for d in report.domains) else 6
    grid = Grid.of(_columns(options.wide, decimals), selection.rows)
    dropped = grid.fit(options.width)
    lines = _wrap(_title(report), options.width)
    lines += grid.lines(options.color, _row_styles(grid.columns, selection.rows))
    if report.intervals:
        lines += _intervals_lines(report, selection.rows)
    footer = [line for build in FOOTER for line in build(report, selection, options)]
    if dropped:
        footer.append(f"note: columns left out to fit {options.width} characters: "
                      f"{', '.join(dropped)} (widen the terminal, or --width)")
    lines += _wrap(footer, options.width)
    return "\n".join(lines) + "\n"


def _wrap(lines: list[str], width: int | None) -> list[str]:
    """Prose wraps only to a known width; piped without one, one line stays one line."""
    if width is None:
        return lines
    out = []
    for line in lines:
        out += textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False) \
            or [""]
    return out


def _title(report: Report) -> list[str]:
    first = f"{report.source}  ({report.format}, clock {report.clock})"
    second = (f"window {_secs(report.start_ns)} .. {_secs(report.end_ns)} s, "
              f"{report.duration_ns / 1e9:.6f} s")
    if report.cpu_hz is not None:
        second += f", cpu_hz {report.cpu_hz / 1e9:.6g} GHz" + \
            (" (assumed: give --cpu-hz)" if report.cpu_hz_assumed else "")
    return [first, second]


def _intervals_lines(report: Report, shown: list[DomainRow]) -> list[str]:
    """The interval table, for the domains the main table shows, in its order."""
    names = {d.domain: d.name for d in shown}
    rows = [cells for interval in report.intervals
            for cells in interval_cells(interval, names)]
    headers = [("", "start s"), ("", "domain")] + [h for _, h in
                                                   (_STATE_HEADERS[s] for s in DomainState)]
    widths = [max([len(h[0]), len(h[1])] + [len(r[i]) for r in rows])
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return GAP.join(c.ljust(w) if i == 1 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    width = sum(widths) + len(GAP) * (len(widths) - 1)
    return ["", "intervals", line([h[0] for h in headers]), line([h[1] for h in headers]),
            "─" * width] + [line(r) for r in rows]


def interval_cells(interval: IntervalRow, names: dict[str, str]) -> list[list[str]]:
    """Cells of one interval: start, domain, % per state (domains in ``names`` only,
    in the order of ``names``)."""
    rows = []
    for key in names:
        states = interval.domains.get(key)
        if states is None:
            continue
        life = sum(states.values())
        rows.append([_secs(interval.start_ns), names[key]]
                    + [f"{100 * states[s] / life:.1f}" if life else "0.0" for s in DomainState])
    return rows


# ---- footer: each function adds its lines; add new ones to FOOTER ---------------

FooterPart = Callable[[Report, Selection, TableOptions], list[str]]


def _left_out(report: Report, selection: Selection, options: TableOptions) -> list[str]:
    lines = []
    if options.match is not None:
        lines.append(f"--match {options.match.pattern!r}: {selection.matched} of "
                     f"{selection.total} domains")
    if selection.folded_blocked:
        lines.append(f"{selection.folded_blocked} domains only blocked (use --all-rows)")
    if selection.beyond_top:
        lines.append(f"{selection.beyond_top} more domains (--top {options.top})")
    return lines


def _no_domain(report: Report, selection: Selection, options: TableOptions) -> list[str]:
    if report.domains:
        return []
    if options.group == "vm":
        return ["no VM: no QEMU vCPU thread of any VM has events in the window; "
                "use --group process to see processes (or --group thread)"]
    return ["no domain: no member of any group has events in the window (see --group)"]


def _host_idle(report: Report, selection: Selection, options: TableOptions) -> list[str]:
    return [host_idle_line(report)] if report.host_idle else []


def _anomalies(report: Report, selection: Selection, options: TableOptions) -> list[str]:
    uncertain = uncertain_line(report)
    return [anomaly_line(report)] + ([uncertain] if uncertain else [])


def _notes(report: Report, selection: Selection, options: TableOptions) -> list[str]:
    return [f"note: {n}" for n in report.notes]


#: the footer, in print order
FOOTER: list[FooterPart] = [_left_out, _no_domain, _host_idle, _anomalies, _notes]


def _secs(ns: int) -> str:
    return f"{ns / 1e9:.6f}"
