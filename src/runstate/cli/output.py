"""``-o/--output``: write to a file, atomically, or to stdout."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import Iterator

from runstate.cli.terminal import terminal_columns
from runstate.errors import EnvironmentProblem, UsageError

TYPE_CHECKING = False  # as typing's, which a report loads only after it starts reading
if TYPE_CHECKING:
    from typing import TextIO

    # the table module (and numpy) loads only for --format table
    from runstate.report.table import TableOptions


@contextlib.contextmanager
def open_output(path: str | None, stdout: TextIO) -> Iterator[TextIO]:
    """Yield the stream to write to; a file appears only when writing succeeded."""
    if path is None or path == "-":
        yield stdout
        return
    import tempfile  # only with -o: it costs every command's start-up time

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".runstate-", suffix=".tmp")
    except OSError as err:  # a missing directory or no permission: the host, not the options
        raise EnvironmentProblem(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---- the table's options (``runstate report`` and any command printing the table) ----

def add_table_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose and lay out table rows."""
    g = p.add_argument_group("table (--format table)")
    g.add_argument("--sort", metavar="COLUMN", type=_sort_key,
                   help="order rows by this column, largest first (names as in the header "
                   "joined by _: full_cont, conc_haz, blocked, life, rdy, cont_p95, domain, "
                   "...; default: contention = full_cont + conc_haz + partial_cont)")
    g.add_argument("--top", type=_positive_int, metavar="N", help="show the first N rows only")
    g.add_argument("--match", metavar="REGEX", type=_regex,
                   help="only domains whose name matches REGEX")
    g.add_argument("--all-rows", action="store_true",
                   help="also list domains that were only blocked (folded into one line "
                   "by default)")
    g.add_argument("--wide", action="store_true",
                   help="more columns: %%run per member, state changes, p95 per "
                   "contention state, lost spans")


def table_options(args: argparse.Namespace, sink: TextIO) -> TableOptions:
    """Rows and layout from the command line; the width from --width, COLUMNS, the terminal.

    Output that is not a terminal is never shortened unless a width is given
    (``--width`` or ``COLUMNS``), so pipes see whole names and whole rows.
    """
    from runstate.report.table import TableOptions

    color = _is_terminal(sink)
    width: int | None = args.width
    if width is None and os.environ.get("COLUMNS", "").isdigit():
        width = int(os.environ["COLUMNS"])
    if width is None and color:
        width = terminal_columns(100)
    if width is not None and width < 40:
        raise UsageError(f"--width {width}: the table needs at least 40 columns")
    return TableOptions(sort=args.sort, top=args.top, match=args.match,
                        all_rows=args.all_rows, wide=args.wide, color=color, width=width,
                        group=args.group)


def _is_terminal(sink: TextIO) -> bool:
    try:
        return sink.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _sort_key(text: str) -> str:
    from runstate.report.table import resolve_sort

    try:
        return resolve_sort(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--sort ")) from None


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"bad regular expression {text!r}: {error}") \
            from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value
