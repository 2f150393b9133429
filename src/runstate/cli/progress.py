"""A progress line on stderr for long reads (only when stderr is a terminal)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

TYPE_CHECKING = False  # as typing's, which a report loads only after it starts reading
if TYPE_CHECKING:
    from typing import TextIO

    from runstate.analysis.pipeline import ProgressSink

#: below this many seconds nothing is shown, so short runs stay quiet
DELAY_S = 0.5


@contextlib.contextmanager
def progress_bar(err: TextIO) -> Iterator[ProgressSink | None]:
    """Yield a callback that counts rows per pass, or None when stderr is not a TTY."""
    if not err.isatty():
        yield None
        return
    # rich only for a terminal: a report piped or written to a file never loads it
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    console = Console(file=err, stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  TextColumn("{task.completed:,.0f} events"), TimeElapsedColumn(),
                  console=console, transient=True, auto_refresh=False) as bar:
        tasks: dict[str, TaskID] = {}
        started = time.monotonic()

        def advance(phase: str, rows: int) -> None:
            if phase not in tasks:
                label = "first pass" if phase == "scan" else "analysing"
                tasks[phase] = bar.add_task(label, total=None)
            bar.advance(tasks[phase], rows)
            if time.monotonic() - started > DELAY_S:
                bar.refresh()

        yield advance
