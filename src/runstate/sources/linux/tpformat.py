"""Tracepoint format descriptions (tracefs ``events/*/*/format`` text).

Offsets and event ids differ between kernels, so every reader decodes raw
tracepoint records through the format text that came with the trace (a
recording's saved format files, or the tracing-data section of perf.data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIELD = re.compile(
    r"field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>-?\d+);)?"
)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    offset: int
    size: int
    signed: bool
    #: ``__data_loc`` field: the u32 at offset holds (length << 16 | offset) of the data
    data_loc: bool
    #: array length for ``char name[16]``-style fields, else None
    array_len: int | None


@dataclass(frozen=True, slots=True)
class EventFormat:
    system: str
    name: str
    id: int
    fields: dict[str, Field]

    def field(self, name: str) -> Field:
        """The field ``name``; KeyError names the event and the fields it has."""
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"{self.system}:{self.name} has no field {name!r} "
                           f"(fields: {', '.join(self.fields)})") from None


class FormatError(ValueError):
    """The format text is not a tracepoint format description."""


def event_dir(name: str) -> tuple[str, str]:
    """(system, event) of an event as recordings name it: a sched event by its name
    alone (``sched_switch``), any other as ``system/name``."""
    system, _, event = name.rpartition("/")
    return system or "sched", event


def parse_format(text: str, system: str = "") -> EventFormat:
    """Parse one ``format`` file's text."""
    name_match = re.search(r"^name:\s*(\S+)", text, re.M)
    id_match = re.search(r"^ID:\s*(\d+)", text, re.M)
    if name_match is None or id_match is None:
        raise FormatError("no 'name:' or 'ID:' line")
    fields: dict[str, Field] = {}
    for m in _FIELD.finditer(text):
        field = _parse_field(m)
        fields[field.name] = field
    if not fields:
        raise FormatError(f"event {name_match.group(1)} lists no fields")
    return EventFormat(system, name_match.group(1), int(id_match.group(1)), fields)


def _parse_field(m: re.Match[str]) -> Field:
    decl = m.group("decl").strip()
    data_loc = decl.startswith("__data_loc")
    array = re.search(r"(\w+)\s*\[(\d*)\]\s*$", decl)
    if array is not None:
        name = array.group(1)
        array_len = int(array.group(2)) if array.group(2) else None
    else:
        name = decl.split()[-1]
        array_len = None
    signed = m.group("signed")
    return Field(
        name=name,
        offset=int(m.group("offset")),
        size=int(m.group("size")),
        signed=signed is not None and signed == "1",
        data_loc=data_loc,
        array_len=array_len,
    )
