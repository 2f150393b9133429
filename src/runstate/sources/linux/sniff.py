"""Whether an input looks like one of the Linux formats, without loading its reader.

Detection runs on every input, so this module imports only ``os`` and ``re``:
a recording is a directory with runstate's ``meta.json``; ``perf script`` and
ftrace text are recognised by the shape of their first lines (a perf.data file
is recognised by its magic number alone, see ``sources.formats``).  The line
patterns live here because the text readers parse with the same ones.
"""

from __future__ import annotations

import os
import re

#: the recording's metadata file and the format it names
META_FILE = "meta.json"
FORMAT_NAME = "runstate-tracefs-recording"

PERF_LINE = re.compile(
    r"^\s*(?P<comm>.*\S)\s+(?:(?P<tgid>-?\d+)/)?(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<secs>\d+)\.(?P<frac>\d+):\s+(?:\d+\s+)?(?P<event>[\w-]+):(?P<name>[\w-]+):\s?"
    r"(?P<args>.*)$"
)
FTRACE_LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>-?\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\d][^\s]*)\s+)?(?P<secs>\d+)\.(?P<frac>\d+):\s+(?P<name>\w+):\s?"
    r"(?P<args>.*)$"
)
#: lines a trace may carry besides events: lost-event notes, trace-cmd's ``cpus=N``
_SKIP = re.compile(r"^\s*(?:CPU:\s*\d+\s+\[LOST \d+ EVENTS\]|cpus=\d+\s*$)")

#: pieces of a perf script sched line, each found on its own
_FIELD_PATTERNS = (
    ("pid", re.compile(r"(?:^|\s)-?\d+/-?\d+\s")),
    ("cpu", re.compile(r"\s\[\d+\]\s")),
    ("time", re.compile(r"\s\d+\.\d+:\s")),
    ("event", re.compile(r"\ssched:sched_\w+:")),
)
_TRACE_FIELDS = re.compile(r"(?:^|\s)(?:prev_comm|comm)=")


def is_recording(path: str, head: bytes) -> bool:
    """A directory (no head) holding a ``meta.json`` that names runstate's recording format."""
    meta = os.path.join(path, META_FILE)
    if head or not os.path.isfile(meta):
        return False
    try:
        with open(meta, "rb") as f:
            return FORMAT_NAME.encode() in f.read(4096)
    except OSError:
        return False


def is_perf_script(path: str, head: bytes) -> bool:
    """perf script lines of sched tracepoints (or lacking a field runstate needs)."""
    return sniff_lines(head, PERF_LINE, " sched:sched_") or _partial_fields(head)


def is_ftrace_text(path: str, head: bytes) -> bool:
    """A tracefs ``trace`` header, or ftrace lines of sched tracepoints."""
    if head.lstrip().startswith(b"# tracer:"):
        return True
    return sniff_lines(head, FTRACE_LINE, " sched_")


def looks_like_perf_script(line: str) -> bool:
    """True for a perf script sched line, whichever of its fields -F left out."""
    if " sched:sched_" in line:
        return True
    # without the event field: the tracepoint's own fields, but not ftrace's ``sched_x:``
    return _TRACE_FIELDS.search(line) is not None and \
        re.search(r"\ssched_\w+:\s", line) is None


def missing_fields(line: str) -> list[str]:
    """The fields runstate needs that this perf script line lacks (empty: none or not
    a perf script line at all)."""
    if not looks_like_perf_script(line):
        return []
    trace = _TRACE_FIELDS.search(line)
    prefix = " " + (line[:trace.start()] if trace else line) + " "
    missing = [name for name, pattern in _FIELD_PATTERNS if pattern.search(prefix) is None]
    if trace is None:
        missing.append("trace")
    if re.match(r"\s*-?\d+(?:/-?\d+)?\s+(?:\[|\d+\.|sched:)", prefix):
        missing.insert(0, "comm")
    return missing if any(name != "pid" for name in missing) else []


def sniff_lines(head: bytes, pattern: re.Pattern[str], needle: str) -> bool:
    """True if the first lines of ``head`` match ``pattern`` and one mentions ``needle``."""
    lines = head.decode("utf-8", "replace").splitlines()[:-1] or \
        head.decode("utf-8", "replace").splitlines()
    checked = 0
    for line in lines[:200]:
        if not line.strip() or line.lstrip().startswith("#") or _SKIP.match(line):
            continue
        m = pattern.match(line)
        if m is None:
            return False
        checked += 1
        if needle in line:
            return True
        if checked >= 50:
            return False
    return False


def _partial_fields(head: bytes) -> bool:
    """perf script text that lacks a field runstate needs: taken, so that reading it
    says which field is missing instead of "unknown input format"."""
    for line in head.decode("utf-8", "replace").splitlines()[:50]:
        if not line.strip() or line.lstrip().startswith("#") or _SKIP.match(line):
            continue
        return bool(missing_fields(line))
    return False
