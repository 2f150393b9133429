"""Stop requests for long-running commands (record, serve): signals set an event.

A handler that only sets an event lets the command's own loop end in order, so
whatever it set up in the kernel (tracefs instances, BPF objects) is released by
the same code path as a normal end.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into ``stop.set()`` while the block runs."""
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
