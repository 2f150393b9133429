"""ftrace text (tracefs ``trace`` / ``trace_pipe``, ``trace-cmd report``) as a scheduler trace.

Lines look like ``comm-tid [(tgid)] [cpu] flags secs.usecs: sched_switch: fields``;
the comm may contain spaces and dashes, so the line is anchored on the last
``-tid`` before the CPU column.  The line loop and field parsing are shared
with ``perfscript`` (both the ``key=value`` form and trace-cmd's sched plugin
form); this module gives the line pattern and the lines to ignore.  Inline
``CPU:N [LOST K EVENTS]`` lines become lost-data windows.
"""

from __future__ import annotations

import re
from typing import IO

from runstate.sources.base import ReadOptions
from runstate.sources.formats import FTRACE_TEXT
from runstate.sources.linux.perfscript import TextSchedSource
from runstate.sources.linux.sniff import FTRACE_LINE, is_ftrace_text

#: trace-cmd report's first line
_CPUS = re.compile(r"^cpus=\d+\s*$")


class FtraceTextSource(TextSchedSource):
    """ftrace / trace-cmd text output of the sched tracepoints."""

    format_name = "ftrace-text"
    line_pattern = FTRACE_LINE
    bad_line_reason = "not an ftrace event line"
    no_tgid_note = ("ftrace text without tgids (enable options/record-tgid): "
                    "each thread counts as its own process")

    def _ignorable_other(self, stripped: str) -> bool:
        """trace-cmd report's ``cpus=N`` and ``version = V`` header lines."""
        return _CPUS.match(stripped) is not None or stripped.startswith("version =")


class FtraceTextReader:
    FORMAT = FTRACE_TEXT

    def sniff(self, path: str, head: bytes) -> bool:
        return is_ftrace_text(path, head)

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions
             ) -> FtraceTextSource:
        return FtraceTextSource(path, stream, options)


FTRACE_TEXT_READER = FtraceTextReader()
