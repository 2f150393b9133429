"""The batches of a perf.data file's first conversion, kept for the analysis's second pass.

The first pass converts the file once (:mod:`.firstpass`); its batches (14
bytes a row) are kept in memory up to ``KEEP_BYTES``.  Those after go to a
temporary file, written as they come and read back in order, so a large file
is neither converted again (a third walk of the file) nor held in memory:
reading 14 bytes a row back costs a fraction of decoding and converting the
file again.  The file is unlinked from the start (it vanishes with the
process) and takes at most half the space free where it is made
(``tempfile.gettempdir()``, so ``TMPDIR``); without the room, or when a write
fails, nothing is kept and the second pass converts the file again, as it
would have.  A thread of its own writes the file (a write lets go of the GIL),
at most ``QUEUED`` batches behind the conversion.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

import numpy as np

from runstate.model.events import EventBatch
from runstate.model.states import MemberState
from runstate.sources.base import SourceInfo

if TYPE_CHECKING:  # imported only by a spill: some milliseconds on the way to every report
    import queue

#: converted batches are kept in memory for the second read up to this many bytes
KEEP_BYTES = 144 << 20
#: a spilled batch: its row count, then its four columns
_HEADER = struct.Struct("<q")
_COLUMNS = (np.int64, np.int32, np.int8, np.int8)
#: batches waiting for the writer at most (the conversion waits beyond)
QUEUED = 2


def spill_room() -> int:
    """Bytes the rows may take on disk: half the space free in the temporary directory."""
    import tempfile

    try:
        st = os.statvfs(tempfile.gettempdir())
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize // 2


class _Writer:
    """Appends batches to a file on a thread of its own; ``failed`` once a write failed."""

    def __init__(self, file: IO[bytes]) -> None:
        import queue
        import threading

        self.file = file
        self.failed = False
        self._queue: queue.Queue[EventBatch | None] = queue.Queue(QUEUED)
        self._thread = threading.Thread(target=self._run, name="runstate rows spill",
                                        daemon=True)
        self._thread.start()

    def put(self, batch: EventBatch) -> None:
        self._queue.put(batch)

    def finish(self) -> bool:
        """Wait for the writes; True if all went to the file."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return not self.failed

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.failed:
                continue
            try:
                self.file.write(_HEADER.pack(len(batch)))
                for column in (batch.time, batch.member, batch.old_state, batch.new_state):
                    self.file.write(np.ascontiguousarray(column).data)
            except OSError:
                self.failed = True


class KeptRead:
    """One conversion's batches and what it left in the source's info, to hand out again.
    (A plain class: a dataclass costs a millisecond to define, on the way to a report.)

    Past ``KEEP_BYTES`` the batches go to a temporary file of at most
    :func:`spill_room` bytes, asked for then.
    """

    __slots__ = ("batches", "nbytes", "anomalies", "initial_states", "uncertain_ticks",
                 "notes", "_writer", "_room")

    def __init__(self) -> None:
        self.batches: list[EventBatch] = []
        self.nbytes = 0
        self._writer: _Writer | None = None
        self._room = 0
        self.anomalies: dict[str, int] = {}
        self.initial_states: dict[int, MemberState] = {}
        self.uncertain_ticks: dict[str, dict[str, int]] = {}
        self.notes: list[str] = []

    def add(self, batch: EventBatch) -> bool:
        """Keep ``batch``; False once it cannot be kept (the caller drops the rest)."""
        self.nbytes += 14 * len(batch)
        if self._writer is None:
            if self.nbytes <= KEEP_BYTES:
                self.batches.append(batch)
                return True
            self._room = spill_room()
            if self._room <= 0:
                return False
            import tempfile

            try:
                spill = tempfile.TemporaryFile(prefix="runstate-rows-")  # noqa: SIM115
            except OSError:
                return False
            self._writer = _Writer(spill)  # closes it in close()
        if self.nbytes - KEEP_BYTES > self._room or self._writer.failed:
            return self.close()
        self._writer.put(batch)
        return True

    def finish(self) -> bool:
        """All kept: the writes to the temporary file are done and went well."""
        return self._writer is None or self._writer.finish() or self.close()

    def close(self) -> bool:
        """Give up the temporary file (it is deleted); always False, for ``add``."""
        if self._writer is not None:
            self._writer.finish()
            self._writer.file.close()
            self._writer = None
        return False

    def __del__(self) -> None:
        self.close()

    @property
    def spilled(self) -> bool:
        return self._writer is not None

    def replay(self) -> Iterator[EventBatch]:
        """The kept batches in order: those in memory, then those in the temporary file
        (each in arrays of its own; the file is read once: it is closed, and so deleted,
        at the end)."""
        yield from self.batches
        if self._writer is None:
            return
        if not self._writer.finish():
            raise OSError("the temporary file of converted rows could not be written")
        spill = self._writer.file
        spill.flush()
        spill.seek(0)
        while header := spill.read(_HEADER.size):
            (n,) = _HEADER.unpack(header)
            columns = [np.empty(n, dtype) for dtype in _COLUMNS]
            for column in columns:
                if spill.readinto(column.data) != column.nbytes:  # type: ignore[attr-defined]
                    raise OSError("the temporary file of converted rows came back short")
            yield EventBatch(*columns)
        self.close()

    def note(self, info: SourceInfo) -> None:
        """Remember what the finished conversion told ``info``."""
        self.anomalies = dict(info.anomalies)
        self.initial_states = dict(info.initial_states)
        self.uncertain_ticks = {k: dict(v) for k, v in info.uncertain_ticks.items()}
        self.notes = list(info.notes)

    def restore(self, info: SourceInfo) -> None:
        """Put back in ``info`` what the conversion told it (a second read counts again)."""
        info.anomalies.clear()
        info.anomalies.update(self.anomalies)
        info.initial_states.clear()
        info.initial_states.update(self.initial_states)
        info.uncertain_ticks.clear()
        info.uncertain_ticks.update({k: dict(v) for k, v in self.uncertain_ticks.items()})
        info.notes[:] = self.notes
