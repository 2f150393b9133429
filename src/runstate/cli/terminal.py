"""The terminal's width, and argparse's parser and help formatter sized by it, without
``shutil``.

argparse makes a help formatter for every option it adds, and its own asks
``shutil`` for the width; importing ``shutil`` loads zlib, bz2 and lzma, about
5 ms of every command, and of a report's time before it starts reading its
file.  The width is worked out here the way ``shutil.get_terminal_size`` does:
``COLUMNS`` if it is a positive integer, else the terminal on stdout, else
the fallback.
"""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # as typing's: every command loads this module
if TYPE_CHECKING:
    from typing import Any


def terminal_columns(fallback: int = 80) -> int:
    """Columns of the terminal, as ``shutil.get_terminal_size(...).columns`` gives them."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return (stdout is not None and os.get_terminal_size(stdout.fileno()).columns) or fallback
    except (ValueError, OSError):
        return fallback


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's raw-description formatter, its width taken from :func:`terminal_columns`
    (2 columns less, as argparse's own)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with :class:`HelpFormatter` unless told otherwise; the parsers
    of its subcommands are of this class too (``add_subparsers`` makes them so)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
