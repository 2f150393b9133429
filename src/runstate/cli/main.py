"""Entry point: subcommands, error handling and exit codes (0 ok, 1 error, 2 usage).

Starting the command should cost little more than starting Python: the
subcommands are listed from a table (name, module, one-line help), and only the
one named on the command line has its module imported to add its options, so
``--version`` and ``--help`` load no subcommand and no numpy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys

from runstate import __version__
from runstate.cli.terminal import ArgumentParser
from runstate.errors import EnvironmentProblem, RunstateError

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import TextIO

DESCRIPTION = """\
How each VM or thread group spends its time in the six domain runstates:
full_run, full_contention, concurrency_hazard, blocked, partial_run,
partial_contention (plus lost where the data cannot say)."""

EPILOG = """\
examples:
  runstate report --sample                      the bundled sample trace
  runstate report trace.xentrace --cpu-hz 2.4G  a Xen trace
  runstate report perf.data --group vm          a Linux perf recording, per QEMU VM
  runstate report events.csv --format json -o out.json
  runstate SUBCOMMAND --help                    options of one subcommand"""


#: every subcommand, in the order ``--help`` lists them: (name, module in runstate.cli
#: with ``add_parser(sub)``, one-line help, the same as the module gives); a module that
#: is not installed on this platform simply adds no subcommand
COMMANDS = (
    ("report", "report_cmd", "domain runstate report of one or more traces"),
    ("convert", "convert_cmd", "convert generic CSV events into a xentrace file"),
    ("formats", "formats_cmd", "list the input formats runstate reads"),
    ("record", "record_cmd", "record scheduler events (tracefs) for later reports"),
    ("top", "top_cmd", "live view of the domain runstates of VMs or thread groups"),
    ("vms", "vms_cmd", "list the QEMU/KVM guests running on this host"),
    ("advise", "advise_cmd", "what to do about each VM or group (add/remove vCPUs, move "
     "load), from a trace or live"),
    ("serve", "serve_cmd", "Prometheus exporter of live domain runstates"),
    ("plot", "plot_cmd", "picture of domain states over time (png/svg/pdf)"),
    ("export", "export_cmd", "timeline trace for Perfetto (.pftrace) or Chrome (.json)"),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; of the subcommands only ``command`` gets its options (its module is
    imported).  Where ``command`` names no subcommand (``--help``, a wrong name), the
    others are there by name and help, so that --help lists them and a wrong name is
    refused with the list; where it names one, the others are left out: a parser each
    (with argparse's translated texts, looked up on disk) is a few milliseconds of
    every command."""
    parser = ArgumentParser(prog="runstate", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"runstate {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error (for debugging)")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    named = any(name == command for name, _, _ in COMMANDS)
    for name, module, help_text in COMMANDS:
        if (named and name != command) or not _installed(module):
            continue
        if name == command:
            _command_module(name, module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _installed(module: str) -> bool:
    return importlib.util.find_spec(f"runstate.cli.{module}") is not None


def _command_module(name: str, module: str) -> ModuleType:
    try:
        return importlib.import_module(f"runstate.cli.{module}")
    except ImportError as error:
        raise EnvironmentProblem(f"runstate {name} is not available here: {error}") from None


def chosen_command(args: Sequence[str]) -> str | None:
    """The subcommand named in ``args``: the first argument that is not an option (the
    options before a subcommand take no value)."""
    for i, arg in enumerate(args):
        if arg == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if arg == "-" or not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit code (nothing is printed to the real
    streams if ``stdout``/``stderr`` are given)."""
    return _run(argv, stdout, stderr)[0]


def _run(argv: Sequence[str] | None, stdout: TextIO | None,
         stderr: TextIO | None) -> tuple[int, bool]:
    """main(), and whether the command that ran leaves nothing that needs the
    interpreter's teardown (see :func:`entry`): its subcommand declared ``quick_exit``
    (an offline command: its files are written and closed when it returns, and it
    starts no tracing, server or thread that outlives it, nor registers anything to
    run at exit)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args = _parse(list(sys.argv[1:] if argv is None else argv), out, err)
    if isinstance(args, int):
        return args, False
    return _execute(args, out, err), bool(getattr(args, "quick_exit", False))


def _parse(args_list: list[str], out: TextIO, err: TextIO) -> argparse.Namespace | int:
    """The command line parsed, or the exit code where there is nothing to run (help,
    version, a usage error, a subcommand not available here)."""
    if "--traceback" in args_list[1:]:  # accepted after the subcommand too
        args_list.remove("--traceback")
        args_list.insert(0, "--traceback")
    try:
        parser = build_parser(chosen_command(args_list))
    except EnvironmentProblem as error:
        print(f"runstate: error: {error}", file=err)
        return error.exit_code
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0) if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help(out)
        return 2
    return args


def _execute(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the parsed command: its exit code, every error one line."""
    try:
        code: int = args.run(args, out, err)
        return code
    except RunstateError as error:
        if args.traceback:
            _print_traceback(err)
        print(f"runstate: error: {error}", file=err)
        return error.exit_code
    except KeyboardInterrupt:
        print("runstate: interrupted", file=err)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # the last line of defence: one line, never a traceback
        if args.traceback:
            _print_traceback(err)
        print(f"runstate: internal error: {type(error).__name__}: {error} "
              "(run with --traceback for details)", file=err)
        return 1


def _print_traceback(err: TextIO) -> None:
    import traceback  # only for --traceback: it costs start-up time

    traceback.print_exc(file=err)


def entry() -> None:
    """Console-script entry point.

    numpy's BLAS would start a thread per core at import, costing tens of ms of CPU on
    every run; nothing in the tool does linear algebra, so one thread is asked for.

    An offline command that succeeded ends the process at once, its output flushed,
    without tearing the interpreter down: that teardown (freeing every module's objects)
    takes 12 ms with numpy alone loaded (``bench/startup_bench.py``), more with the
    analysis, and frees nothing the end of the process would not.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _restart_with_heap_in_huge_pages(sys.argv[1:])
    code, quick = _run(None, None, None)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quick = False  # as before: the interpreter's own exit deals with the closed pipe
    except OSError as error:  # a full disk behind a redirection, say
        print(f"runstate: error: writing the output: {error.strerror or error}",
              file=sys.stderr)
        code = 1
    if quick and code == 0:
        sys.stderr.flush()
        os._exit(0)
    sys.exit(code)


#: commands that run for long and wake at intervals (a refresh, a scrape)
PERIODIC_COMMANDS = ("top", "serve")
#: glibc's malloc asks for transparent huge pages for its heap (glibc 2.35 and later;
#: an older glibc ignores the setting)
HUGE_HEAP_TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _restart_with_heap_in_huge_pages(args: Sequence[str]) -> None:
    """Start a periodic command again, at once, with Python's objects in glibc's heap and
    that heap in transparent huge pages.

    Why: after a second asleep, other work on the host has flushed the caches and the
    TLB, and a refresh pays mostly for finding its memory again: page-table walks, which
    huge pages make 512 times fewer.  Measured with ``bench/live_overhead.py``
    (``top --batch --interval 1s`` following 2000 threads), it takes a fifth to two
    fifths off ``top``'s CPU time (``docs/live.md``, Cost).
    Both settings must be in place before the interpreter starts, hence the restart
    (the same process: ``exec``).  Nothing is done where the user set ``PYTHONMALLOC``
    (or a restart already did), where the system offers no transparent huge pages, or
    where the restart fails.
    """
    if (chosen_command(args) not in PERIODIC_COMMANDS or "PYTHONMALLOC" in os.environ
            or not sys.executable):
        return
    try:
        with open(THP_SETTING, encoding="ascii") as f:
            if "[never]" in f.read():
                return
    except OSError:
        return
    tunables = os.environ.get("GLIBC_TUNABLES")
    env = dict(os.environ, PYTHONMALLOC="malloc",
               GLIBC_TUNABLES=f"{tunables}:{HUGE_HEAP_TUNABLE}" if tunables else HUGE_HEAP_TUNABLE)
    with contextlib.suppress(OSError):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
