"""``--semantics xenalyze``: domain runstates computed with xenalyze's own rules.

This reproduces the cycles and counts of ``xenalyze -s`` domain runstates
(docs/xentrace.md, "xenalyze-compatible mode"), quirks included, so users can check the tool
against output they already trust: per-pcpu cursors over the file's windows
with xenalyze's discovery and merge order, vCPUs invisible (``init``) until
seen running, per-domain windows, lost handling (everything not running
becomes ``lost``), the end-of-pcpu ``lost``, continue-running back-dating,
and counts of non-zero intervals.

The emulation is one C pass (``_xenalyze``) over the memory-mapped file
(stdin and other pipes are spooled to a temporary file first), after the usual walker has
checked every record, so broken input gives the same one-line errors as the
other modes.  Memory does not grow with the file: the cursors read each
pcpu's windows lazily, mapped pages behind the slowest cursor are released,
and interval lengths are kept as a histogram, not a list.

What is printed between braces (``{p5|p50|p95}``) is computed from that
histogram.  Lengths below 128 cycles have their own bucket; above, a bucket
spans less than 1/64 of its lower bound (64 buckets per power of two), and
keeps the sum and the largest of its lengths.  The p-th *self-weighted
percentile* printed is the largest interval length in the first bucket at
which the cumulative sum of lengths (buckets in increasing order) reaches p%
of the state's cycles.  It is a length that really occurred, never below the
exact self-weighted percentile (the smallest length L such that intervals no
longer than L make up p% of the cycles) and less than 1/64 above it.
xenalyze's own percentiles come from a sampling quickselect and cannot be
reproduced anyway; cycles, counts, averages and "Total time" are exact.

Not emulated: xenalyze's TSC-skew heuristics (the record is applied or
ignored as rule 3 says, but no pcpu offset is ever shifted),
``TRC_SCHED_SWITCH`` records, and xenalyze re-activating a pcpu whose data
had already ended when the highest active pcpu peeks at one of its windows
(xenalyze would then process that pcpu's records from there a second time;
here only never-seen pcpus are activated).  Where xenalyze would exit with a fatal error,
an :class:`~runstate.errors.InputError` is raised.
"""

from __future__ import annotations

import mmap
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import IO

from runstate._abi import check_kernel
from runstate.analysis import _xenalyze
from runstate.errors import InputError
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.constants import DEFAULT_CPU_HZ
from runstate.sources.xentrace.walk import Walker

check_kernel(_xenalyze)

#: xenalyze's domain runstate labels, in its print order, with runstate's names
LABELS: tuple[tuple[str, str], ...] = (
    ("blocked", "blocked"),
    ("partial run", "partial_run"),
    ("full run", "full_run"),
    ("partial contention", "partial_contention"),
    ("concurrency_hazard", "concurrency_hazard"),
    ("full_contention", "full_contention"),
    ("lost", "lost"),
)

#: the fractions the braces print (5th, 50th and 95th percentile)
PERCENTS = (5, 50, 95)


@dataclass(frozen=True, slots=True)
class XenalyzeState:
    """One domain runstate line: total cycles, number of non-zero intervals, percentiles."""

    cycles: int
    count: int
    #: self-weighted 5th, 50th and 95th percentiles of the interval lengths
    #: (cycles; see the module docstring for their precision)
    percentiles: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class XenalyzeDomain:
    dom: int
    #: state name (full_run, ..., lost) -> figures; only states with count > 0
    states: dict[str, XenalyzeState]


@dataclass(frozen=True, slots=True)
class XenalyzeResult:
    cpu_hz: float
    cpu_hz_assumed: bool
    #: last minus first processed record's order TSC ("Total time")
    total_cycles: int
    #: domains in xenalyze's order (ascending id, so the idle domain last)
    domains: tuple[XenalyzeDomain, ...]
    notes: tuple[str, ...] = ()


#: fatal error codes of ``_xenalyze.run``
_START_BUSY, _NEXT_BUSY = 1, 2


def run_xenalyze(path: str, stream: IO[bytes] | None, options: ReadOptions) -> XenalyzeResult:
    """Domain runstates of a xentrace file (or stream) with xenalyze's rules."""
    if stream is None:
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            regular = True  # the walker reports the error
        if regular:
            return _run_file(path, None, options)
        try:
            with open(path, "rb") as pipe:  # a FIFO or /dev/fd/N: cannot be mapped
                return run_xenalyze(path, pipe, options)
        except OSError as err:
            raise InputError(path, err.strerror or str(err)) from None
    with tempfile.TemporaryFile(prefix="runstate-xenalyze-") as spool:
        try:
            shutil.copyfileobj(stream, spool, 1 << 20)
            spool.flush()
        except OSError as err:
            raise InputError(path, err.strerror or str(err)) from None
        return _run_file(path, spool, options)


def _run_file(path: str, spool: IO[bytes] | None, options: ReadOptions) -> XenalyzeResult:
    # first pass: the walker checks every record (same errors as the other modes)
    if spool is not None:
        spool.seek(0)
    walker = Walker(path, spool, lenient=options.lenient, other_rows=True,
                    chunk_rows=options.chunk_rows)
    rows = 0
    for chunk in walker.chunks():
        rows += len(chunk)
    if rows == 0:
        raise InputError(path, "no trace records")
    with _map(path, spool) as data:
        out = _xenalyze.run(data, True)
    if out[0] != 0:
        raise _fatal(path, out)
    _, first, last, raw = out
    cpu_hz = options.cpu_hz if options.cpu_hz is not None else DEFAULT_CPU_HZ
    notes = []
    if options.cpu_hz is None:
        notes.append("cpu_hz not given (--cpu-hz); assumed 2.4 GHz like xenalyze")
    domains = tuple(
        XenalyzeDomain(dom, {LABELS[s][1]: XenalyzeState(cycles, count, (p5, p50, p95))
                             for s, cycles, count, p5, p50, p95 in states})
        for dom, states in raw)
    total = 0 if first is None or last is None else last - first
    return XenalyzeResult(cpu_hz, options.cpu_hz is None, total, domains, tuple(notes))


def _map(path: str, spool: IO[bytes] | None) -> mmap.mmap:
    try:
        if spool is not None:
            return mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ)
        fd = os.open(path, os.O_RDONLY)
        try:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
    except OSError as err:
        raise InputError(path, err.strerror or str(err)) from None


def _fatal(path: str, out: tuple[int, ...]) -> InputError:
    code, off, dom, vid, pcpu, cdom, cvid = out
    if code == _START_BUSY:
        reason = (f"first record of d{dom}v{vid} says it was running on pcpu {pcpu}, "
                  "which already runs another vCPU")
    else:
        reason = (f"d{dom}v{vid} starts running on pcpu {pcpu}, "
                  f"where d{cdom}v{cvid} is still running")
    return InputError(path, f"xenalyze would stop here: {reason}", offset=off)
