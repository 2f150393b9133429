"""Every input format's name, description and sniffing priority, apart from its reader.

The registry lists and detects formats from these alone, so ``runstate
formats``, ``--input-format`` and detection by content never import a reader
(numpy, C walkers) that the input does not need; each reader takes its
``FORMAT`` from here.  Lower priorities sniff first: formats with a magic
number or a directory layout before loose text heuristics.
"""

from __future__ import annotations

from runstate.sources.options import FormatInfo

#: the perf script fields (and option) every event line needs, in perf's order
PERF_SCRIPT_FIELDS = "-F comm,pid,tid,cpu,time,event,trace --ns"
#: the first bytes of a perf.data file (perf's ``PERFILE2``)
PERF_DATA_MAGIC = b"PERFILE2"

TRACEFS_RECORDING = FormatInfo(
    "tracefs-recording", "a directory written by 'runstate record' (tracefs raw pages)", 50)
PERF_DATA = FormatInfo(
    "perf-data", "perf.data from perf record -e sched:... (read directly)", 100)
XENTRACE = FormatInfo(
    "xentrace", "Xen binary trace written by xentrace (per-pcpu windows)", 500)
PERF_SCRIPT = FormatInfo(
    "perf-script", f"perf script text of sched tracepoints (perf script {PERF_SCRIPT_FIELDS})",
    700)
FTRACE_TEXT = FormatInfo(
    "ftrace-text", "ftrace text: tracefs trace / trace_pipe, trace-cmd report", 710)
CSV = FormatInfo(
    "csv", "generic member events, CSV with header time_ns,domain,member,old_state,new_state",
    900)
JSONL = FormatInfo("jsonl", "generic member events, JSON Lines with the CSV's keys", 910)
