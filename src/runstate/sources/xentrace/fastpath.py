"""Exact mode's fast path for xentrace files: both passes in C (``_job``, ``_merge``).

The first pass (:func:`scan`) walks the mapped file once and keeps, per vCPU,
only its first record (smallest TSC, then byte offset): its old state is the
vCPU's state from the window start, and the order of the vCPUs' first records
is the order the generic path registers them in.  The second pass walks each
pcpu's windows as its own time-ordered stream and merges the streams by (TSC,
byte offset), the order the generic path's stable sort gives: either into
event columns (:func:`batches`, for analyses that take rows batch by batch),
or, for the whole trace, straight into the engine's accounting
(:func:`account`: no row goes through Python).

The first pass and the accounting second pass are one C job on threads of
its own (``_job``), which the report command may start before the analysis
modules have loaded (``prefetch``); :func:`scan` takes over such a job.
Both passes use a second core where there is one: the first walks the file
in chunks of about 16 MB (up to 8), two at a time; the accounting splits the domains between two
threads; the column merge has two threads each merge half the pcpus while
the caller merges their two streams and its engine accounts the rows.

A file takes this path only where the two agree by construction: no lost
records (loss markers' order and the generic path's late-row clamp depend on
how it chunks the file), nothing skipped or resynced by ``--lenient``, no
error.  :func:`scan` returns None for any other file, which the generic path
then reads (and reports, if it is damaged) as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runstate._abi import check_constants, check_kernel
from runstate.model.events import EventBatch
from runstate.sources.xentrace import _job, _merge, prefetch
from runstate.sources.xentrace.constants import MAX_PCPUS
from runstate.sources.xentrace.prefetch import threads
from runstate.sources.xentrace.walk import Stat, map_file

for _kernel in (_merge, _job):
    check_kernel(_kernel)
    check_constants(_kernel, {"MAX_PCPUS": MAX_PCPUS})
# the job accounts rows into state arrays of the engine's layout; its export
# checks each array's length against that layout (kernel_state.h) before it
# writes, so a job built against another layout refuses the engine's arrays
check_constants(_job, {"N_STATS": len(Stat)})

#: batches handed out in turn (a batch stays valid until the next is asked for)
SLOTS = 2
#: rows per batch at most: less than the merge threads buffer ahead (4 x 16 Ki
#: rows each, _merge.c), so they go on merging while the engine accounts a batch
BATCH_ROWS = 1 << 16
#: fewer rows than this are merged without threads: starting them costs more
#: than they save (about half a millisecond)
THREAD_MIN_ROWS = 1 << 17


@dataclass(frozen=True, slots=True)
class Plan:
    """What the first pass learned: the counters the reader reports, and the vCPUs."""

    #: the walker's counters (``walk.Stat`` order) and per-pcpu last TSC (-1: none)
    stats: npt.NDArray[np.int64]
    pcpu_tsc: npt.NDArray[np.int64]
    #: the first timestamp of each pcpu's first window that has one (-1: none)
    pcpu_first: npt.NDArray[np.int64]
    #: pcpus that carry vCPU rows, in increasing order, and how many each carries
    pcpus: npt.NDArray[np.int32]
    pcpu_rows: npt.NDArray[np.int64]
    #: vCPU keys (dom << 16 | vcpu) in the order of their first records
    keys: npt.NDArray[np.int64]
    #: the byte offset of each vCPU's first record (the only continue-running
    #: record of the vCPU the second pass keeps)
    first_offsets: npt.NDArray[np.int64]
    #: each vCPU's state before its first record (its old state; continue: running)
    initial: npt.NDArray[np.int8]
    #: smallest and largest TSC of any vCPU record
    first_time: int
    last_time: int
    #: time of the last row the merge emits (a change, or a vCPU's first record)
    last_row_time: int
    #: byte offset where a cut final window stops being readable, or None
    truncated_at: int | None
    #: the C job that read the file: it runs the accounting second pass too
    job: _job.Job


def scan(path: str, lenient: bool, progress: Callable[[int], None] | None = None) -> Plan | None:
    """The first pass over the file at ``path`` (the one a prefetch started, if it read
    this file), or None if it needs the generic path."""
    job = prefetch.claim(path, lenient)
    if job is None:
        job = prefetch.start_job(map_file(path), lenient, False)
    if job.scanned() != _job.SCAN_DONE:
        job.close()
        return None
    stats, pcpu_tsc, pcpu_first, pcpu_rows, summary, firsts = (
        np.frombuffer(b, np.int64) for b in job.result())
    if progress is not None:
        progress(int(summary[_job.SUM_ROWS]))
    # the vCPUs come in the merge's order: by their first records' TSC, then byte offset
    key, time, off, old = firsts.reshape(-1, 4).T
    truncated = int(summary[_job.SUM_TRUNCATED])
    return Plan(
        stats=stats.copy(), pcpu_tsc=pcpu_tsc.copy(), pcpu_first=pcpu_first.copy(),
        pcpus=np.flatnonzero(pcpu_rows).astype(np.int32),
        pcpu_rows=pcpu_rows[pcpu_rows > 0].copy(),
        keys=np.ascontiguousarray(key), first_offsets=np.ascontiguousarray(off),
        initial=old.astype(np.int8),
        first_time=int(summary[_job.SUM_FIRST]), last_time=int(summary[_job.SUM_LAST]),
        last_row_time=max(int(summary[_job.SUM_LAST_CHANGE]), int(time.max())),
        truncated_at=truncated if truncated >= 0 else None, job=job)


def account(plan: Plan, state: Callable[[Callable[[tuple[Any, ...]], bool]], bool]) -> int | None:
    """The second pass with every row accounted by the engine's rules as it is merged,
    in C: the rows accounted, or None if the rows must go to the engine as batches.

    ``state`` hands the job's export the engine's state arrays (``Engine.adopt``);
    the job puts its accounted state there only if they hold the state it started
    from (the same members, domains, window start and initial states).
    """
    try:
        rows = plan.job.account()
        return rows if rows >= 0 and state(plan.job.export) else None
    finally:
        plan.job.close()


def groups(plan: Plan, n: int) -> tuple[npt.NDArray[np.int32], ...]:
    """The pcpus split into ``n`` groups of about as many rows, each merged by a
    thread of its own (largest first, each to the group with fewest rows)."""
    n = max(1, min(n, plan.pcpus.shape[0]))
    members: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in np.argsort(-plan.pcpu_rows, kind="stable").tolist():
        lightest = load.index(min(load))
        members[lightest].append(int(plan.pcpus[i]))
        load[lightest] += int(plan.pcpu_rows[i])
    return tuple(np.array(sorted(g), np.int32) for g in members)


def batches(path: str, plan: Plan, member_order: npt.NDArray[np.intp], lenient: bool,
            rows: int) -> Iterator[EventBatch]:
    """The second pass: event batches of up to ``rows`` rows; ``member_order[m]`` is
    the plan's vCPU that is member m.  A batch's arrays are reused for a later
    batch: a caller that keeps batches copies them (as ``EventBatch`` consumers
    that keep them do)."""
    keys = np.ascontiguousarray(plan.keys[member_order])
    offsets = np.ascontiguousarray(plan.first_offsets[member_order])
    total = int(plan.pcpu_rows.sum())
    rows = max(1, min(rows, total, BATCH_ROWS))
    slots = tuple((np.empty(rows, np.int64), np.empty(rows, np.int32), np.empty(rows, np.int8),
                   np.empty(rows, np.int8)) for _ in range(SLOTS))
    threaded = threads() > 1 and total >= THREAD_MIN_ROWS
    with map_file(path) as data:
        merger = _merge.Merger(data, groups(plan, 2 if threaded else 1), keys, offsets,
                               1 if lenient else 0, True)
        try:
            merger.start(slots, threaded)
            while True:
                slot, n = merger.next()
                if n == 0:
                    return
                yield EventBatch(*(c[:n] for c in slots[slot]))  # type: ignore[arg-type]
        finally:
            merger.close()
