"""Entry point: subcommands, error handling and exit codes (0 ok, 1 error, 2 usage)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from runstate import __version__
from runstate.cli import convert_cmd, formats_cmd, report_cmd
from runstate.errors import RunstateError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runstate", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"runstate {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error (for debugging)")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    report_cmd.add_parser(sub)
    convert_cmd.add_parser(sub)
    formats_cmd.add_parser(sub)
    _add_optional_commands(sub)
    return parser


#: subcommands in their own modules, each with ``add_parser(sub)``; a module that is not
#: there (or cannot be imported on this platform) simply adds no subcommand
OPTIONAL_COMMANDS = ("record_cmd", "top_cmd", "vms_cmd", "advise_cmd", "serve_cmd",
                     "plot_cmd", "export_cmd")


def _add_optional_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in OPTIONAL_COMMANDS:
        try:
            module = importlib.import_module(f"runstate.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"runstate.cli.{name}":
                raise
            continue
        module.add_parser(sub)


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit code (nothing is printed to the real
    streams if ``stdout``/``stderr`` are given)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if "--traceback" in args_list[1:]:  # accepted after the subcommand too
        args_list.remove("--traceback")
        args_list.insert(0, "--traceback")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0) if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help(out)
        return 2
    try:
        code: int = args.run(args, out, err)
        return code
    except RunstateError as error:
        if args.traceback:
            traceback.print_exc(file=err)
        print(f"runstate: error: {error}", file=err)
        return error.exit_code
    except KeyboardInterrupt:
        print("runstate: interrupted", file=err)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # the last line of defence: one line, never a traceback
        if args.traceback:
            traceback.print_exc(file=err)
        print(f"runstate: internal error: {type(error).__name__}: {error} "
              "(run with --traceback for details)", file=err)
        return 1


def entry() -> None:
    """Console-script entry point."""
    code = main()
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    sys.exit(code)
