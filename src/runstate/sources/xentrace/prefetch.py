"""Reading a xentrace file ahead of its analysis, on other threads (no numpy here).

A report spends its first tenth of a second loading the analysis (numpy
among it) on one core.  The fast path's C job (``_job``) needs none of it: the
report command starts it as soon as it knows the file (``registry.prefetch``),
and the first pass, and for a report of the whole trace the second pass
with its accounting, run on other threads meanwhile.  The reader later
:func:`claim`\\ s the job instead of starting its own.

A started job is trusted only for the very file it mapped: it is claimed by
the same path and ``--lenient``, and only if the file there is still the
one it mapped (device, inode, size, modification and change times) once the
first pass is over; otherwise it is dropped, and the reader reads the file
afresh.
"""

from __future__ import annotations

import mmap
import os
import stat

from runstate._abi import check_kernel
from runstate.sources.options import FileIdentity, ReadOptions, file_identity
from runstate.sources.xentrace import _job

check_kernel(_job)

#: rows the first pass keeps for the second, which then need not decode them
#: again (8 bytes each: 64 MiB, the rows of a file of about 170 MB)
KEEP_ROWS = 1 << 23
#: with two cores, the first pass walks chunks of about this many bytes (at
#: most 8) and the second accounts PARTS parts of the domains: tasks that the
#: job's thread takes in turn, and so does the caller as soon as it waits for
#: the job.  Each chunk and part keeps its rows in memory of its own, taken
#: fresh from the system (which costs as much as a chunk's decoding on some
#: systems): not many of them.
CHUNK_BYTES, PARTS = 16 << 20, 2
#: a file below SPLIT_MIN_BYTES is read on one thread; so is, when the job is
#: started ahead of the command's start-up, one below ALONE_BYTES: its job is
#: over about when the start-up is, and a second thread would only get in the
#: start-up's way
SPLIT_MIN_BYTES, ALONE_BYTES = 4 << 20, 64 << 20


def threads() -> int:
    """Threads a pass may use: two where the process may run on two cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 2 if cores > 1 else 1


def layout(size: int, ahead: bool) -> tuple[int, int]:
    """(parts, chunk bytes) of the job for a file of ``size`` bytes (``ahead``: the job
    starts before the command has loaded the analysis)."""
    if threads() == 1 or size < SPLIT_MIN_BYTES or (ahead and size < ALONE_BYTES):
        return 1, size + 1
    return PARTS, CHUNK_BYTES


def start_job(data: mmap.mmap, lenient: bool, whole: bool, ahead: bool = False) -> _job.Job:
    """The fast path's job on a mapped file, started: its first pass, and with ``whole``
    its second (for an analysis that accounts the whole trace); ``ahead``: see layout."""
    job = _job.Job(data, _job.F_LENIENT if lenient else 0, True)
    parts, chunk_bytes = layout(len(data), ahead)
    job.start(threads(), whole, parts, KEEP_ROWS, chunk_bytes)
    return job


class _Started:
    """A job started on a file, and what it was started for.  (A plain class: a
    dataclass costs a millisecond to define, on the way to every report.)"""

    __slots__ = ("job", "identity", "lenient")

    def __init__(self, job: _job.Job, identity: FileIdentity, lenient: bool) -> None:
        self.job = job
        self.identity = identity
        self.lenient = lenient


#: jobs started and not yet claimed, by path
_started: dict[str, _Started] = {}


def prefetch(path: str, options: ReadOptions, whole: bool) -> None:
    """Start the fast path's job on the file at ``path``: its first pass, and with
    ``whole`` (the analysis accounts every row of the trace) its second.

    Anything in the way (no such file, not a regular file, no memory) just
    starts nothing: the reader meets it again and reports it then.
    """
    discard(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return
        data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return
    finally:
        os.close(fd)
    try:
        job = start_job(data, options.lenient, whole, ahead=True)
    except MemoryError:
        return
    _started[path] = _Started(job, file_identity(st), options.lenient)


def claim(path: str, lenient: bool) -> _job.Job | None:
    """The job started on ``path``, its first pass over, if it read the file that is
    there now with these options; else None (and the job, if any, is dropped)."""
    started = _started.pop(path, None)
    if started is None:
        return None
    job = started.job
    if started.lenient == lenient:
        job.scanned()
        try:
            if file_identity(os.stat(path)) == started.identity:
                return job
        except OSError:
            pass
    job.close()
    return None


def discard(path: str) -> None:
    """Stop and drop a job started on ``path`` that nobody claimed."""
    started = _started.pop(path, None)
    if started is not None:
        started.job.close()
