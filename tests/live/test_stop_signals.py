"""``StopOnSignals``: a loop asleep until its next interval wakes for SIGTERM at once,
whichever thread the kernel delivers it to (the tracefs source runs a second one)."""

from __future__ import annotations

import os
import signal
import threading
import time

from runstate.live.monitor import StopOnSignals


def _term_from_another_thread(after_s: float) -> threading.Thread:
    def send() -> None:
        time.sleep(after_s)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_signal_to_another_thread_ends_the_sleep() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignals() as signals:
        sender = _term_from_another_thread(0.2)
        start = time.monotonic()
        signals.sleep(30)
        slept = time.monotonic() - start
        sender.join()
        assert signals.stop.is_set()
    assert 0.15 < slept < 5
    assert signal.getsignal(signal.SIGTERM) == before
    assert signal.set_wakeup_fd(-1) == -1  # no pipe of ours left behind


def test_a_wait_for_input_also_ends_and_says_nothing_was_read() -> None:
    with StopOnSignals() as signals:
        reader, writer = os.pipe()
        try:
            sender = _term_from_another_thread(0.2)
            start = time.monotonic()
            assert signals.wait([reader], 30) == []
            slept = time.monotonic() - start
            sender.join()
        finally:
            for fd in (reader, writer):
                os.close(fd)
        assert signals.stop.is_set()
    assert slept < 5
