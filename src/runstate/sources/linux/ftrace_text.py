"""ftrace text (tracefs ``trace`` / ``trace_pipe``, ``trace-cmd report``) as a scheduler trace.

Lines look like ``comm-tid [(tgid)] [cpu] flags secs.usecs: sched_switch: fields``;
the comm may contain spaces and dashes, so the line is anchored on the last
``-tid`` before the CPU column.  Field parsing is shared with ``perfscript``
(both the ``key=value`` form and trace-cmd's sched plugin form).  Inline
``CPU:N [LOST K EVENTS]`` lines become lost-data windows.
"""

from __future__ import annotations

import re
from typing import IO

from runstate.sources.base import FormatInfo, ReadOptions
from runstate.sources.linux.perfscript import (
    TextParseError,
    TextSchedSource,
    TextTable,
    add_fields,
    add_lost,
    sniff_lines,
    time_ns,
)

FTRACE_LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>-?\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\d][^\s]*)\s+)?(?P<secs>\d+)\.(?P<frac>\d+):\s+(?P<name>\w+):\s?"
    r"(?P<args>.*)$"
)
#: trace-cmd report's first line
_CPUS = re.compile(r"^cpus=\d+\s*$")


class FtraceTextSource(TextSchedSource):
    """ftrace / trace-cmd text output of the sched tracepoints."""

    format_name = "ftrace-text"

    def _parse(self, text: IO[str], table: TextTable) -> None:
        match = FTRACE_LINE.match
        last = -1
        for line_no, line in enumerate(text, start=1):
            m = match(line)
            if m is None:
                stripped = line.strip()
                if stripped and not stripped.startswith("#") and not _CPUS.match(stripped) \
                        and not add_lost(table, line) and not stripped.startswith("version ="):
                    self._raise(line_no, "not an ftrace event line", line)
                continue
            t = time_ns(m["secs"], m["frac"])
            if t < last:
                self._raise(line_no, "time goes backwards", line)
                continue
            last = t
            tid, tgid = int(m["tid"]), m["tgid"]
            if tgid is not None and tgid.lstrip("-").isdigit() and tid > 0:
                table.names.tgid[tid] = int(tgid)
            try:
                add_fields(table, t, int(m["cpu"]), m["name"], m["args"])
            except TextParseError as err:
                self._raise(line_no, str(err), line)
        if not table.names.tgid:
            self.info.notes.append("ftrace text without tgids (enable options/record-tgid): "
                                   "each thread counts as its own process")


class FtraceTextReader:
    FORMAT = FormatInfo("ftrace-text", "ftrace text: tracefs trace / trace_pipe, "
                        "trace-cmd report", 710)

    def sniff(self, path: str, head: bytes) -> bool:
        text = head.lstrip()
        if text.startswith(b"# tracer:"):
            return True
        return sniff_lines(head, FTRACE_LINE, " sched_")

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions
             ) -> FtraceTextSource:
        return FtraceTextSource(path, stream, options)


FTRACE_TEXT_READER = FtraceTextReader()
