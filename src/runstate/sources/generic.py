"""Generic member-event files: CSV and JSON Lines, so any tracer can feed the engine.

CSV header ``time_ns,domain,member,old_state,new_state``; JSON Lines objects
with the same keys.  States: running, runnable, blocked, offline, and
``absent`` (old state of a member created at that moment / new state of one
that leaves).  A lost-data window is two rows with empty domain and member:
``new_state=lost`` where it begins and ``old_state=lost`` where it ends.
Rows must be sorted by time.  Optional keys ``domain_name`` and
``member_name`` label rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from runstate.errors import InputError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import FormatInfo, ReadOptions, SourceInfo
from runstate.sources.formats import CSV, JSONL
from runstate.sources.generic_sniff import COLUMNS, is_csv, is_jsonl

_LOST = "lost"


@dataclass(slots=True)
class _Row:
    line: int
    time_ns: str | int
    domain: str
    member: str
    old: str
    new: str
    domain_name: str | None = None
    member_name: str | None = None


class _RowConverter:
    """Turns rows into batches, checking what a generic file must satisfy."""

    def __init__(self, path: str, registry: Registry, info: SourceInfo) -> None:
        self.path = path
        self.registry = registry
        self.info = info
        self.last_time: int | None = None
        self.last_by_member: dict[int, int] = {}

    def batches(self, rows: Iterable[_Row], chunk: int) -> Iterator[EventBatch]:
        cols: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
        for row in rows:
            self._convert(row, cols)
            if len(cols[0]) >= chunk:
                yield EventBatch.from_columns(*cols)
                cols = ([], [], [], [])
        if cols[0]:
            yield EventBatch.from_columns(*cols)

    def _convert(self, row: _Row, cols: tuple[list[int], ...]) -> None:
        t = self._time(row)
        if not row.domain and not row.member:
            code = self._marker(row)
            for col, value in zip(cols, (t, -1, 0, code), strict=True):
                col.append(value)
            return
        if not row.domain or not row.member:
            raise InputError(self.path, "domain and member must both be given", line=row.line)
        old, new = self._state(row, row.old), self._state(row, row.new)
        if old == new:
            raise InputError(self.path, f"member changes to the state it is in ({row.new})",
                             line=row.line)
        if row.domain_name:
            self.registry.domain(row.domain, row.domain_name)
        m = self.registry.member(row.domain, row.member, row.member_name or None)
        previous = self.last_by_member.get(m)
        if previous is not None and previous == t:
            self.info.count("equal_timestamps_within_member")
        self.last_by_member[m] = t
        for col, value in zip(cols, (t, m, int(old), int(new)), strict=True):
            col.append(value)

    def _time(self, row: _Row) -> int:
        try:
            t = int(row.time_ns)
        except (TypeError, ValueError):
            raise InputError(self.path, f"time_ns is not an integer: {row.time_ns!r}",
                             line=row.line) from None
        if self.last_time is not None and t < self.last_time:
            raise InputError(self.path, f"time goes backwards ({t} after {self.last_time}); "
                             "rows must be sorted by time_ns", line=row.line)
        self.last_time = t
        return t

    def _marker(self, row: _Row) -> int:
        if row.new == _LOST and row.old != _LOST:
            return LOSS_BEGIN
        if row.old == _LOST and row.new != _LOST:
            return LOSS_END
        raise InputError(self.path, "a row without domain and member must mark lost data "
                         "(new_state=lost or old_state=lost)", line=row.line)

    def _state(self, row: _Row, text: str) -> MemberState:
        try:
            return MemberState.from_label(text)
        except ValueError:
            raise InputError(
                self.path,
                f"unknown state {text!r} (expected running, runnable, blocked, offline, absent)",
                line=row.line,
            ) from None


class GenericSource:
    """A CSV or JSONL event file (or stdin)."""

    def __init__(self, path: str, stream: IO[bytes] | None, options: ReadOptions,
                 fmt: str) -> None:
        self.path = path
        self._stream = stream
        self._options = options
        self._format = fmt
        self.registry = Registry()
        self.info = SourceInfo(format=fmt, path=path)
        self.rereadable = stream is None

    def batches(self) -> Iterator[EventBatch]:
        converter = _RowConverter(self.path, self.registry, self.info)
        with self._open() as text:
            rows = _csv_rows(self.path, text) if self._format == "csv" else \
                _jsonl_rows(self.path, text)
            yield from converter.batches(rows, self._options.chunk_rows)

    def _open(self) -> IO[str]:
        if self._stream is not None:
            return io.TextIOWrapper(self._stream, encoding="utf-8", newline="")
        try:
            return open(self.path, encoding="utf-8", newline="")
        except OSError as err:
            raise InputError(self.path, err.strerror or str(err)) from None


def _csv_rows(path: str, text: IO[str]) -> Iterator[_Row]:
    reader = csv.reader(text)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(path, "empty file", line=1) from None
    except (csv.Error, UnicodeDecodeError) as err:
        raise InputError(path, f"not readable as CSV: {err}", line=1) from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(path, f"bad header: missing {', '.join(missing)} "
                         f"(expected {','.join(COLUMNS)})", line=1)
    idx = [header.index(c) for c in COLUMNS]
    dn = header.index("domain_name") if "domain_name" in header else None
    mn = header.index("member_name") if "member_name" in header else None
    line = 1
    try:
        for fields in reader:
            line = reader.line_num
            if not fields:
                continue
            if len(fields) < len(header):
                raise InputError(path, f"expected {len(header)} fields, found {len(fields)}",
                                 line=line)
            t, d, m, o, n = (fields[i].strip() for i in idx)
            yield _Row(line, t, d, m, o.lower(), n.lower(),
                       fields[dn] if dn is not None else None,
                       fields[mn] if mn is not None else None)
    except (csv.Error, UnicodeDecodeError) as err:
        raise InputError(path, f"not readable as CSV: {err}", line=line + 1) from None


def _jsonl_rows(path: str, text: IO[str]) -> Iterator[_Row]:
    line = 0
    try:
        for line, raw in enumerate(text, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise InputError(path, f"not valid JSON: {err.msg}", line=line) from None
            if not isinstance(obj, dict):
                raise InputError(path, "each line must be a JSON object", line=line)
            missing = [c for c in COLUMNS if c not in obj]
            if missing:
                raise InputError(path, f"missing keys: {', '.join(missing)}", line=line)
            yield _Row(line, obj["time_ns"], _text(obj["domain"]), _text(obj["member"]),
                       _text(obj["old_state"]).lower(), _text(obj["new_state"]).lower(),
                       obj.get("domain_name"), obj.get("member_name"))
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text: {err.reason}", line=line + 1) from None


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


class _GenericReader:
    def __init__(self, fmt: FormatInfo, sniff: Callable[[str, bytes], bool]) -> None:
        self.FORMAT = fmt
        self._sniff = sniff

    def sniff(self, path: str, head: bytes) -> bool:
        return self._sniff(path, head)

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions) -> GenericSource:
        return GenericSource(path, stream, options, self.FORMAT.name)


CSV_READER = _GenericReader(CSV, is_csv)
JSONL_READER = _GenericReader(JSONL, is_jsonl)
