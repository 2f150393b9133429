"""What a live view pays for waking up (not a test: run it by hand, as root).

A view refreshed once a second does its work right after a second asleep, when
what it touches has left the caches and translation buffers (on a virtual
machine, the host may run other guests on the same core meanwhile).  On such a
machine a refresh may cost many times what the same refresh costs a moment
after the last one, and more so when the host is busy (one likely reason why
``bench/live_overhead.py``'s figures for ``top`` change from hour to hour).

This measures it in one process, as CPU time of the calling thread
(``time.thread_time``) after pauses of ``--pauses`` seconds. The kinds of work
take turns, in an order that rotates each round, so that what runs before one
differs from round to round (code two kinds share may still be warm):

* ``view``: what ``top --batch`` does each interval for a bpf monitor following
  a process of ``--threads`` threads as one domain: a snapshot, the interval,
  the host's busy share from ``/proc/stat``, the JSON record written (to
  ``/dev/null``);
* ``raw read``: the same group looked up once with ctypes and formatted with
  ``struct`` and ``%``, no numpy: a floor for reading the counters, not the same
  work (the view's snapshot also reads the program's tallies, and reads the group
  twice, the first time to warm the lookup);
* primitives: a numpy reduction over 2000 values, the subtraction of a 2×7 numpy
  array from itself, and a Python list comprehension over 7 values.

    python bench/live_cold.py                       # pauses 0.01 0.1 1 s
    python bench/live_cold.py --pauses 1 --rounds 20
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from runstate.cli.top_batch import write_json
from runstate.cli.top_rows import HostCpu, interval
from runstate.live.bpf.loader import BPF_F_LOCK, GROUP_DTYPE
from runstate.live.monitor import Monitor
from runstate.live.snapshot import LiveSnapshot, Selection

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_overhead import MANY_THREADS  # noqa: E402  (the same load as the top bench)

#: one group record of the bpf program, as GROUP_DTYPE lays it out
GROUP_RECORD = struct.Struct("<IIiiiiiIQ7QQQQ3QQ")
assert GROUP_RECORD.size == GROUP_DTYPE.itemsize


class View:
    """One interval of ``top --batch --format json`` per call, as ``top`` makes it."""

    def __init__(self, monitor: Monitor, out: TextIO) -> None:
        self.monitor = monitor
        self.out = out
        self.host = HostCpu()
        self.previous: LiveSnapshot | None = None

    def __call__(self) -> None:
        self.monitor.refresh()
        snap = self.monitor.snapshot(with_members=False)
        write_json(self.out, interval(self.previous, snap), self.host.busy_percent())
        self.previous = snap


class RawRead:
    """The monitor's one group looked up with ctypes and formatted with ``%``, no numpy."""

    TEXT = '{"group":%d,"state":%d,"since_ns":%d,"totals":[%d,%d,%d,%d,%d,%d,%d]}'

    def __init__(self, monitor: Monitor) -> None:
        source = monitor._source  # the bench looks inside: it measures the read itself
        acc = source._acc  # type: ignore[union-attr]
        (self.group,) = source._reads._known  # type: ignore[union-attr]
        self.lookup = acc._call("bpf_map_lookup_elem_flags")
        self.fd = acc.fds["groups"]
        self.key = ctypes.c_uint32(self.group)
        self.buf = ctypes.create_string_buffer(GROUP_RECORD.size)

    def __call__(self) -> None:
        now = time.monotonic_ns()
        if self.lookup(self.fd, ctypes.byref(self.key), self.buf, BPF_F_LOCK) != 0:
            raise OSError(ctypes.get_errno(), "lookup of the group failed")
        fields = GROUP_RECORD.unpack_from(self.buf.raw)
        state, since, totals = fields[6], fields[8], list(fields[9:16])
        if state >= 0:
            totals[state] += max(0, now - since)
        _ = self.TEXT % (self.group, state, since, *totals)


def primitives() -> dict[str, Callable[[], object]]:
    values = np.ones(2000, np.uint32)
    small = np.arange(14, dtype=np.int64).reshape(2, 7)
    seven = list(range(7))
    return {"numpy reduction": lambda: bool(values.all()),
            "numpy subtraction": lambda: small - small,
            "python comprehension": lambda: [v + 1 for v in seven]}


def measure(kinds: dict[str, Callable[[], object]], pause: float, rounds: int
            ) -> tuple[dict[str, float], int]:
    """Median µs of thread CPU each kind takes after ``pause`` s asleep (the first round
    is left out: it follows the last pause's rounds, or the loading of everything), and
    the page faults the measured work took in all."""
    spent: dict[str, list[float]] = {name: [] for name in kinds}
    faults = 0
    names = list(kinds)
    for r in range(rounds + 1):
        for name in names[r % len(names):] + names[: r % len(names)]:
            work = kinds[name]
            time.sleep(pause)
            before = _faults()
            begin = time.thread_time()
            work()
            spent[name].append(time.thread_time() - begin)
            faults += _faults() - before if r else 0
    return ({name: round(1e6 * statistics.median(times[1:])) for name, times in spent.items()},
            faults)


def _faults() -> int:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_minflt + usage.ru_majflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pauses", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2000)
    parser.add_argument("--busy", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("live_cold.py needs root")
    load = subprocess.Popen([sys.executable, "-c", MANY_THREADS, str(args.threads),
                             str(args.busy)], stdout=subprocess.PIPE, text=True)
    try:
        assert load.stdout is not None
        load.stdout.readline()
        with (Monitor(Selection(pids=(load.pid,), group="process"), source="bpf") as monitor,
              open(os.devnull, "w", encoding="utf-8") as sink):
            kinds: dict[str, Callable[[], object]] = {
                "view": View(monitor, sink), "raw read": RawRead(monitor), **primitives()}
            kinds["view"]()  # the first record: everything loaded once
            measured = {f"{pause:g} s": measure(kinds, pause, args.rounds)
                        for pause in args.pauses}
    finally:
        load.kill()
        load.wait()
    print(json.dumps({"cpu_us_after_pause": {k: v[0] for k, v in measured.items()},
                      "page_faults_after_pause": {k: v[1] for k, v in measured.items()},
                      "rounds": args.rounds, "threads": args.threads}, indent=2))


if __name__ == "__main__":
    main()
