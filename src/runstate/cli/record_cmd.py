"""``runstate record``: record scheduler events with a private tracefs instance.

Behaves like ``perf record`` where it can: ``record -- CMD ARGS`` records a
command from its start to its exit, the output defaults to ``runstate.rec``
and an existing one is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from runstate.cli.stopping import stop_on_signals
from runstate.cli.units import DURATION_HELP, parse_duration_ns
from runstate.errors import EnvironmentProblem, UsageError
from runstate.sources.linux.sniff import FORMAT_NAME, META_FILE

if TYPE_CHECKING:  # the recorder (tracefs, numpy) loads when a recording starts
    from runstate.live.recorder import RecordSummary

#: where a recording goes without -o (as perf writes perf.data)
DEFAULT_OUTPUT = "runstate.rec"

EPILOG = f"""\
examples:
  runstate record -- make -j4                          a command, from start to exit
  runstate record --vm web1 --duration 30s -o web1.rec  the QEMU VM started with -name web1
  runstate record --pid 1234 --pid 5678 -d 10           these processes' threads
  runstate record --all -d 5s -o host.rec               every task on the host
  runstate report web1.rec                              then analyse the recording

DURATION is {DURATION_HELP}.
Needs root.  Ctrl-C (or SIGTERM) stops early and still writes a valid
recording; the tracefs instance is always removed.  A recording whose
recorder was killed is still read, up to its last event."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="record scheduler events (tracefs) for later reports",
                       usage="runstate record [options] (--pid PID | --vm NAME | --all | "
                       "-- COMMAND [ARG...])",
                       description="Record sched_switch / sched_wakeup / fork / exit events "
                       "of a command, chosen processes or VMs, or every task, into a "
                       "recording directory.",
                       epilog=EPILOG)
    p.add_argument("--pid", type=int, action="append", default=[], metavar="PID",
                   help="record this process's threads (and what they fork); a thread id "
                   "records its whole process; repeatable")
    p.add_argument("--vm", action="append", default=[], metavar="NAME",
                   help="record the QEMU VM started with -name NAME (or guest=NAME); repeatable")
    p.add_argument("--all", action="store_true", help="record every task (no pid filter)")
    p.add_argument("-d", "--duration", metavar="DURATION",
                   help="stop after this long, e.g. 30s, 500ms, 2min (default: until "
                   "Ctrl-C, or until COMMAND exits)")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="PATH",
                   help=f"recording directory to create (default: {DEFAULT_OUTPUT})")
    p.add_argument("-f", "--force", action="store_true",
                   help="replace an existing recording at PATH")
    p.add_argument("--buffer-kb", type=int, metavar="KB",
                   help="fixed ring buffer per CPU; by default it starts at 8192 (--all) "
                   "or 2048 KiB and doubles while one poll fills more than half of it")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="run COMMAND [ARG...] (no shell) and record it from start to exit")
    p.set_defaults(run=run_record)


def run_record(args: argparse.Namespace, out: TextIO | None = None,
               err: TextIO | None = None) -> int:
    """Record until the duration ends, the command exits or a stop signal arrives."""
    from runstate.live.recorder import CommandNotStarted, record, select_pids

    err = sys.stderr if err is None else err
    command = _command(args.command)
    duration_s = None if args.duration is None else parse_duration_ns(args.duration) / 1e9
    if args.buffer_kb is not None and args.buffer_kb <= 0:
        raise UsageError("--buffer-kb must be positive")
    if command and (args.all or args.pid or args.vm):
        raise UsageError("-- COMMAND records that command; do not combine it with "
                         "--pid, --vm or --all")
    if args.all and (args.pid or args.vm):
        raise UsageError("--all records everything; do not combine it with --pid or --vm")
    pids: list[int] | None = None
    vms: dict[int, str] = {}
    if not command:
        pids, vms = select_pids(args.pid, args.vm, args.all)
        _name_thread_groups(args.pid, pids, err)
    _prepare_output(args.output, args.force)
    stop = threading.Event()
    with stop_on_signals(stop):
        try:
            summary = record(args.output, pids=pids, vms=vms, duration_s=duration_s,
                             stop=stop, buffer_kb=args.buffer_kb, command=command or None,
                             progress=lambda text: print(text, file=err, flush=True))
        except CommandNotStarted:
            shutil.rmtree(args.output, ignore_errors=True)  # it holds no event of it
            raise
        except FileExistsError as error:
            raise UsageError(str(error)) from None
        except FileNotFoundError as error:
            raise EnvironmentProblem(f"cannot create {args.output}: {error.strerror}") \
                from None
        except PermissionError as error:
            raise EnvironmentProblem(f"runstate record needs root (tracefs): {error}") \
                from None
    _print_summary(summary, command, err)
    return 0


def _command(rest: list[str]) -> list[str]:
    """The argv after ``--`` (argparse keeps the ``--`` in a REMAINDER)."""
    if rest and rest[0] == "--":
        rest = rest[1:]
    if rest and rest[0].startswith("-"):
        raise UsageError(f"unknown option {rest[0]!r} (a command goes after --)")
    return list(rest)


def _name_thread_groups(asked: list[int], chosen: list[int] | None, err: TextIO) -> None:
    """Say when a --pid was a thread and its process is recorded instead."""
    for pid in asked:
        if chosen is not None and pid not in chosen:
            print(f"--pid {pid} is a thread; recording its process", file=err)


def _prepare_output(path: str, force: bool) -> None:
    """Refuse to overwrite (unless --force, and then only a recording) or to create
    missing parent directories."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise EnvironmentProblem(f"cannot create {path}: directory {parent} does not exist")
    exists = os.path.isfile(path) or os.path.isdir(path) and bool(os.listdir(path))
    if not exists:
        return
    if not force:
        raise UsageError(f"{path} already exists (use --force to replace it, or -o PATH)")
    if not _is_recording(path):
        raise UsageError(f"{path} exists and is not a runstate recording; not replacing it")
    shutil.rmtree(path)


def _is_recording(path: str) -> bool:
    try:
        with open(os.path.join(path, META_FILE), encoding="utf-8") as f:
            return bool(json.load(f).get("format") == FORMAT_NAME)
    except (OSError, ValueError, AttributeError):
        return False


def _print_summary(summary: RecordSummary, command: list[str], err: TextIO) -> None:
    for name in summary.removed_stale:
        print(f"removed the tracefs instance {name} left by a killed run", file=err)
    seconds = (summary.stop_ns - summary.start_ns) / 1e9
    threads = f"{summary.threads} thread{'' if summary.threads == 1 else 's'}"
    print(f"Recorded {seconds:.1f} s, {summary.pages} pages ({summary.bytes / 2**20:.1f} MiB), "
          f"{threads} into {summary.path} (buffer {summary.buffer_kb} KiB per CPU)", file=err)
    if command:
        code = summary.exit_code
        how = "was stopped with the recording" if code is None else \
            f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        print(f"{' '.join(command)} {how}", file=err)
    for cpu, lost in sorted(summary.lost.items()):
        print(f"warning: the kernel lost {lost} events on cpu {cpu}; that time is reported "
              "as lost (use --buffer-kb to enlarge the buffer)", file=err)
