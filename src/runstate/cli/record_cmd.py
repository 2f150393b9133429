"""``runstate record``: record scheduler events with a private tracefs instance."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TextIO

from runstate.errors import EnvironmentProblem, UsageError
from runstate.live.recorder import record, select_pids

EPILOG = """\
examples:
  runstate record --vm web1 --duration 30 -o web1.rec    the QEMU VM started with -name web1
  runstate record --pid 1234 --pid 5678 -d 10 -o app.rec  these processes' threads
  runstate record --all -d 5 -o host.rec                  every task on the host
  runstate report web1.rec                                 then analyse the recording

Needs root.  Ctrl-C (or SIGTERM) stops early and still writes a valid
recording; the tracefs instance is always removed."""

#: signals that end a recording cleanly
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="record scheduler events (tracefs) for later reports",
                       description="Record sched_switch / sched_wakeup / fork / exit events "
                       "of chosen processes or VMs into a recording directory.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pid", type=int, action="append", default=[], metavar="PID",
                   help="record this process's threads (and what they fork); repeatable")
    p.add_argument("--vm", action="append", default=[], metavar="NAME",
                   help="record the QEMU VM started with -name NAME (or guest=NAME); repeatable")
    p.add_argument("--all", action="store_true", help="record every task (no pid filter)")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("-o", "--output", required=True, metavar="PATH",
                   help="recording directory to create (must not exist or be empty)")
    p.add_argument("--buffer-kb", type=int, metavar="KB",
                   help="fixed ring buffer per CPU; by default it starts at 8192 (--all) "
                   "or 2048 KiB and doubles while one poll fills more than half of it")
    p.set_defaults(run=run_record)


def run_record(args: argparse.Namespace, out: TextIO | None = None,
               err: TextIO | None = None) -> int:
    """Record until the duration ends or a stop signal arrives; 0 on success."""
    err = sys.stderr if err is None else err
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.buffer_kb is not None and args.buffer_kb <= 0:
        raise UsageError("--buffer-kb must be positive")
    if args.all and (args.pid or args.vm):
        raise UsageError("--all records everything; do not combine it with --pid or --vm")
    if os.path.isdir(args.output) and os.listdir(args.output) or os.path.isfile(args.output):
        raise UsageError(f"{args.output} already exists (choose a new recording directory)")
    pids, vms = select_pids(args.pid, args.vm, args.all)
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            summary = record(args.output, pids=pids, vms=vms, duration_s=args.duration,
                             stop=stop, buffer_kb=args.buffer_kb,
                             progress=lambda text: print(text, file=err, flush=True))
        except FileExistsError as error:
            raise UsageError(str(error)) from None
        except PermissionError as error:
            raise EnvironmentProblem(f"runstate record needs root (tracefs): {error}") \
                from None
    for name in summary.removed_stale:
        print(f"removed the tracefs instance {name} left by a killed run", file=err)
    seconds = (summary.stop_ns - summary.start_ns) / 1e9
    print(f"Recorded {seconds:.1f} s, {summary.pages} pages ({summary.bytes / 2**20:.1f} MiB), "
          f"{summary.threads} threads into {summary.path} (buffer {summary.buffer_kb} KiB "
          "per CPU)", file=err)
    for cpu, lost in sorted(summary.lost.items()):
        print(f"warning: the kernel lost {lost} events on cpu {cpu}; that time is reported "
              "as lost (use --buffer-kb to enlarge the buffer)", file=err)
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into a stop request while recording."""
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    for sig in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
