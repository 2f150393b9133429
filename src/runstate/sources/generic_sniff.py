"""Whether an input looks like generic member events (CSV or JSON Lines), without numpy.

Both are judged by their first line alone: a CSV header of plain names that
includes one of the event columns, or a JSON object with all of them.  The
reader then checks the columns it needs and says what is missing.
"""

from __future__ import annotations

import json
import re

#: the keys of a generic member event, in the CSV's column order
COLUMNS = ("time_ns", "domain", "member", "old_state", "new_state")
_HEADER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_csv(path: str, head: bytes) -> bool:
    """A header line of plain names, one of them an event column."""
    fields = [f.strip() for f in _first_line(head).decode("utf-8", "replace").split(",")]
    return len(fields) >= 2 and all(_HEADER_NAME.match(f) for f in fields) and any(
        c in fields for c in COLUMNS)


def is_jsonl(path: str, head: bytes) -> bool:
    """A first line that is a JSON object with every event key."""
    first = _first_line(head)
    if not first.startswith(b"{"):
        return False
    try:
        obj = json.loads(first)
    except ValueError:
        return False
    return isinstance(obj, dict) and all(c in obj for c in COLUMNS)


def _first_line(head: bytes) -> bytes:
    return head.lstrip().split(b"\n", 1)[0].strip()
