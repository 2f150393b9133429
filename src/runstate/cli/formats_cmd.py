"""``runstate formats``: the input formats this version reads, in sniffing order."""

from __future__ import annotations

import argparse
from typing import TextIO

from runstate.sources.registry import READERS


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("formats", help="list the input formats runstate reads",
                       description="List the input formats, in the order they are detected.",
                       epilog="example:\n  runstate formats",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for reader in sorted(READERS, key=lambda r: r.FORMAT.priority):
        out.write(f"{reader.FORMAT.name:<14} {reader.FORMAT.description}\n")
    return 0
