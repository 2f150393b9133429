"""``runstate formats``: the input formats this version reads, in sniffing order.

Two aligned columns, one format per line, so the list reads well and greps
well; the name column is as wide as the longest name.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from runstate.sources.registry import READERS


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("formats", help="list the input formats runstate reads",
                       description="List the input formats, in the order they are detected "
                       "(the first whose content matches reads the input; --input-format "
                       "NAME skips detection).",
                       epilog="example:\n  runstate formats")
    p.set_defaults(run=run, quick_exit=True)


def format_lines() -> list[str]:
    """``NAME  DESCRIPTION`` lines under a header, the descriptions aligned."""
    readers = sorted(READERS, key=lambda r: r.FORMAT.priority)
    rows = [("format", "reads")] + [(r.FORMAT.name, r.FORMAT.description) for r in readers]
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {text}".rstrip() for name, text in rows]


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write("".join(line + "\n" for line in format_lines()))
    return 0
