"""``runstate top``: the domain runstates of this host's VMs or thread groups, live.

Full screen by default (like esxtop / xentop); ``--batch`` writes one record per
interval instead (like ``esxtop -b``).  ``runstate top -`` reads a trace stream
on stdin (``xentrace -D -e 0x0002f000 /dev/stdout | runstate top -``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from runstate.cli.units import DURATION_HELP, parse_duration_ns
from runstate.errors import UsageError
from runstate.live import SOURCES

if TYPE_CHECKING:  # the live modules need numpy: they are loaded when top runs, not for --help
    from runstate.cli.top_rows import Interval
    from runstate.live.monitor import StopOnSignals
    from runstate.live.snapshot import LiveSnapshot

#: how often a wait looks whether a stream on stdin has ended
STREAM_POLL_S = 0.1

DESCRIPTION = """\
The domain runstates of this host's VMs or thread groups, live: full screen by
default (like esxtop / xentop); --batch writes one record per interval instead
(like esxtop -b).  'runstate top -' reads a trace stream on stdin."""

EPILOG = """\
examples:
  runstate top                          every QEMU VM (else every process), full screen
  runstate top --vm web1 --vm web2      two VMs
  runstate top --pid 1234 --group thread  one process, a domain per thread
  runstate top --batch --format csv --interval 1s --count 60 > vms.csv
  xentrace -D -e 0x0002f000 /dev/stdout | runstate top -     a Xen host

keys (full screen): q quit, < > or s change the sort column, r reverse,
m expand a domain into its members, p pause, ? help"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "top", help="live view of the domain runstates of VMs or thread groups",
        description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("stream", nargs="?", metavar="-",
                   help="read a trace stream on stdin instead of tracing this host")
    p.add_argument("--vm", action="append", default=[], metavar="NAME",
                   help="the QEMU VM started with -name NAME (or guest=NAME); repeatable")
    p.add_argument("--pid", type=int, action="append", default=[], metavar="PID",
                   help="this process's threads and what they fork; repeatable")
    p.add_argument("--all", action="store_true",
                   help="every task (the default when nothing is chosen)")
    p.add_argument("--group", metavar="vm|process|cgroup|thread|FILE",
                   help="how threads form domains (default: vm if QEMU vCPU threads are "
                        "present, else process)")
    p.add_argument("--source", choices=SOURCES, default="auto",
                   help="bpf: in-kernel counters; tracefs: a private trace instance; "
                        "auto (default): bpf where it loads, else tracefs")
    p.add_argument("--interval", default="2s", metavar="DURATION",
                   help=f"refresh interval (default 2s); {DURATION_HELP}")
    p.add_argument("--batch", action="store_true",
                   help="write one record per interval to stdout, no screen control")
    p.add_argument("--format", choices=("json", "csv"), default="json",
                   help="--batch records: json (one document per line, default) or csv")
    p.add_argument("--count", type=int, metavar="N", help="stop after N intervals")
    p.add_argument("--members", action="store_true",
                   help="--batch records: include each domain's members")
    p.add_argument("--input-format", metavar="NAME", help="format of the stream (with -)")
    p.add_argument("--cpu-hz", metavar="HZ", help="TSC frequency of a Xen stream (with -)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    interval_ns = parse_duration_ns(args.interval)
    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be a positive number of intervals")
    if args.stream is not None and args.stream != "-":
        raise UsageError(f"top reads a stream from stdin ('-'), not {args.stream!r}; "
                         "use 'runstate report' for files")
    if args.stream == "-" and (args.vm or args.pid or args.all):
        raise UsageError("-: choose either a stream on stdin or --vm/--pid/--all")
    source = _open(args, err)
    try:
        if args.batch:
            return _batch(source, args, interval_ns, out)
        from runstate.cli.top_screen import run_screen

        return run_screen(source, interval_ns, args.count, out)
    finally:
        source.stop()


class _Snapshots:
    """Monitor or stream, as a sequence of snapshots."""

    def __init__(self, take: Callable[[bool, int | None], LiveSnapshot | None],
                 stop: Callable[[], None], finished: Callable[[], bool], name: str) -> None:
        #: a snapshot, with member rows if asked (they cost time with many members), at a
        #: moment if given (the end of an interval: the tracefs source lags the clock)
        self.take = take
        self.stop = stop
        self.finished = finished
        self.name = name
        self.refresh: Callable[[], None] = lambda: None
        #: how often a wait looks whether the source finished (None: it never does, so a
        #: wait sleeps in one piece until its deadline or a signal)
        self.poll_s: float | None = None

    def pause(self, left_s: float) -> float:
        """How long a wait with ``left_s`` seconds to its deadline sleeps at once."""
        return left_s if self.poll_s is None else min(left_s, self.poll_s)


def _open(args: argparse.Namespace, err: TextIO) -> _Snapshots:
    if args.stream == "-":
        from runstate.cli.units import parse_frequency
        from runstate.live.stream_source import StreamMonitor
        from runstate.sources.base import ReadOptions

        options = ReadOptions(group=args.group, cpu_hz=None if args.cpu_hz is None
                              else parse_frequency(args.cpu_hz))
        stream = StreamMonitor("-", options, args.input_format).start()

        def stream_snapshot(with_members: bool, at_ns: int | None) -> LiveSnapshot | None:
            if stream.error is not None:
                raise stream.error
            return stream.snapshot(with_members, at_ns)

        snaps = _Snapshots(stream_snapshot, stream.stop, stream.finished.is_set, "stream")
        snaps.poll_s = STREAM_POLL_S
        return snaps
    from runstate.live.monitor import Monitor
    from runstate.live.snapshot import Selection

    select = Selection(pids=tuple(args.pid), vms=tuple(args.vm),
                       all_tasks=args.all or not (args.pid or args.vm), group=args.group)
    monitor = Monitor(select, source=args.source).start()
    for note in monitor.fallback_notes:
        print(f"runstate top: {note}", file=err)
    print(f"runstate top: source {monitor.source}", file=err)
    snaps = _Snapshots(monitor.snapshot, monitor.stop, lambda: False, monitor.source or "")
    snaps.refresh = monitor.refresh
    return snaps


def _batch(source: _Snapshots, args: argparse.Namespace, interval_ns: int,
           out: TextIO) -> int:
    from runstate.cli.top_batch import CsvWriter, write_json
    from runstate.cli.top_rows import HostCpu, interval
    from runstate.live.monitor import StopOnSignals

    host = HostCpu()
    csv_out = CsvWriter(out) if args.format == "csv" else None

    def emit(iv: Interval) -> None:
        if csv_out is not None:
            csv_out.write(iv)
        else:
            write_json(out, iv, host.busy_percent())

    with StopOnSignals() as signals:
        # the first record starts where counting started (a short stream may be over
        # before a first snapshot could be taken)
        previous: LiveSnapshot | None = None
        written = 0
        deadline = time.monotonic_ns()
        while args.count is None or written < args.count:
            deadline += interval_ns
            finished = _wait(signals, source, deadline)
            if signals.stop.is_set():
                break
            source.refresh()
            current = source.take(args.members, deadline)
            # an interval of no time (a source that has not moved on) is not written
            if current is not None and (previous is None or current.time_ns > previous.time_ns):
                emit(interval(previous, current))
                written += 1
                previous = current
            if finished:
                break
    return 0


def _wait(signals: StopOnSignals, source: _Snapshots, deadline: int) -> bool:
    """Sleep until ``deadline`` (monotonic ns), a stop request or the end of a stream.

    A monitor never finishes, so it sleeps in one piece (a signal ends the
    sleep): a process woken ten times a second pays each time for memory other
    tasks have pushed out of the caches meanwhile.
    """
    while True:
        left = deadline - time.monotonic_ns()
        if left <= 0 or signals.stop.is_set():
            return source.finished()
        if source.finished():
            return True
        pause = left / 1e9
        signals.sleep(source.pause(pause))


def main() -> None:  # pragma: no cover - convenience for python -m runstate.cli.top_cmd
    from runstate.cli.main import main as cli_main

    sys.exit(cli_main(["top", *sys.argv[1:]]))
