"""``runstate convert``: generic CSV member events -> a xentrace file."""

from __future__ import annotations

import argparse
from typing import TextIO

from runstate.cli.units import parse_frequency
from runstate.errors import UsageError

EPILOG = """\
example:
  runstate convert events.csv -o events.trace --cpu-hz 2.4G
  runstate report events.trace --cpu-hz 2.4G"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("convert", help="convert generic CSV events into a xentrace file",
                       description="Write generic CSV member events (time_ns,domain,member,"
                       "old_state,new_state) as a xentrace binary file that xenalyze and "
                       "runstate read.", epilog=EPILOG)
    p.add_argument("input", metavar="EVENTS.csv")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--cpu-hz", default="2.4G", metavar="HZ",
                   help="TSC frequency used to turn ns into cycles (default 2.4G)")
    p.set_defaults(run=run, quick_exit=True)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from runstate.sources.xentrace.convert import csv_to_xentrace
    except ImportError as error:
        raise UsageError(f"xentrace conversion is not available: {error}") from None
    csv_to_xentrace(args.input, args.output, parse_frequency(args.cpu_hz))
    return 0
