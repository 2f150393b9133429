"""CSV rendering: one row per domain (scope ``total``) and per interval and domain.

Column names carry their units (``_ns``, ``_pct``).  Interval rows leave the
episode columns empty.  Interval rows come first, as each interval finishes
(:class:`CsvStream`), then one total row per domain.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from itertools import islice
from typing import TextIO

from runstate.model.states import DomainState
from runstate.report.model import DomainRow, IntervalRow, Report

_EPISODE_FIELDS = ("count", "p50_ns", "p95_ns", "p99_ns", "max_ns")


def header() -> list[str]:
    cols = ["scope", "start_ns", "end_ns", "domain", "name", "members_seen", "lifetime_ns"]
    for s in DomainState:
        cols += [f"{s.label}_ns", f"{s.label}_pct"]
        cols += [f"{s.label}_{f}" for f in _EPISODE_FIELDS]
    return cols


def render_csv(report: Report) -> str:
    """The rows exactly as :class:`CsvStream` writes them while the analysis runs."""
    out = io.StringIO()
    stream = CsvStream(out)
    names = {d.domain: d.name for d in report.domains}
    for row in report.intervals:
        stream.intervals(row, [(row.start_ns, row.end_ns)], names)
    stream.totals(report)
    return out.getvalue()


def interval_rows(intervals: Iterable[IntervalRow], names: dict[str, str]) -> list[list[str]]:
    rows = []
    for interval in intervals:
        for key, states in interval.domains.items():
            if key not in names:
                continue
            life = sum(states.values())
            row = ["interval", str(interval.start_ns), str(interval.end_ns), key, names[key],
                   "", str(life)]
            for s in DomainState:
                row += [str(states[s]), _pct(states[s], life)] + [""] * len(_EPISODE_FIELDS)
            rows.append(row)
    return rows


def _domain_row(report: Report, d: DomainRow) -> list[str]:
    row = ["total", str(report.start_ns), str(report.end_ns), d.domain, d.name,
           str(d.members_seen), str(d.lifetime_ns)]
    for s in DomainState:
        st = d.states[s]
        row += [str(st.ns), _pct(st.ns, d.lifetime_ns)]
        row += [str(getattr(st, f)) for f in _EPISODE_FIELDS]
    return row


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}" if whole else "0.00"


class CsvStream:
    """CSV written while the reports are computed: the header, interval rows as each
    interval finishes, then each report's total rows once it is complete."""

    def __init__(self, sink: TextIO) -> None:
        self._sink = sink
        self._writer = csv.writer(sink, lineterminator="\n")
        self._writer.writerow(header())

    def intervals(self, row: IntervalRow, spans: Iterable[tuple[int, int]],
                  names: dict[str, str]) -> None:
        """Rows with ``row``'s figures, for each (start_ns, end_ns) of ``spans``."""
        tails = []
        for cells in interval_rows([row], names):
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerow(cells[3:])
            tails.append(text.getvalue())
        pending = iter(spans)
        while chunk := list(islice(pending, 4096)):
            self._sink.write("".join([f"interval,{start},{end},{tail}"
                                      for start, end in chunk for tail in tails]))

    def totals(self, report: Report) -> None:
        for d in report.domains:
            self._writer.writerow(_domain_row(report, d))
