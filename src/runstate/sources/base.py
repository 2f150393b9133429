"""The reader protocol every input format implements.

A *reader* is a module-level object with a :class:`FormatInfo`, a ``sniff``
predicate and an ``open`` factory.  ``open`` returns a :class:`Source`, which
yields time-sorted :class:`~runstate.model.events.EventBatch` chunks and
registers members in its :class:`~runstate.model.registry.Registry` as it meets
them.  A re-readable source (a regular file) can be iterated twice; the
pipeline then does an exact two-pass analysis (see ``engine.resolve``).

A reader may also offer a :class:`Prefetcher`, which the registry starts on a
file before the reader module is even loaded (``registry.prefetch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from runstate.model.states import MemberState

# the records a reader is handed live apart, so that a read can start before this
# module (dataclasses, typing) loads; they are part of the protocol all the same
from runstate.sources.options import CHUNK_ROWS as CHUNK_ROWS
from runstate.sources.options import FileIdentity as FileIdentity
from runstate.sources.options import FormatInfo as FormatInfo
from runstate.sources.options import ReadOptions as ReadOptions
from runstate.sources.options import file_identity as file_identity

if TYPE_CHECKING:  # the registry sniffs formats through this module without numpy
    from runstate.model.events import EventBatch
    from runstate.model.registry import Registry


@dataclass(slots=True)
class SourceInfo:
    """What a source knows about its trace besides the events."""

    format: str
    path: str
    #: clock of the batches' ``time``: "ns" for generic files, "tsc", "mono", "local", ...
    clock: str = "ns"
    #: if set, ticks are TSC cycles at this frequency (Xen); else ticks are ns
    cpu_hz: float | None = None
    #: the tick that ``--from/--to`` seconds count from (Xen: first record's TSC);
    #: None: seconds are the clock's own (ns / 1e9), as perf prints them
    origin: int | None = None
    #: True when cpu_hz is the default, not given by the user
    cpu_hz_assumed: bool = False
    #: human-readable remarks for reports ("cpu_hz not given; assumed 2.4 GHz")
    notes: list[str] = field(default_factory=list)
    #: counted data anomalies (filled while reading)
    anomalies: dict[str, int] = field(default_factory=dict)
    #: initial member states the source knows without events (e.g. /proc at record start)
    initial_states: dict[int, MemberState] = field(default_factory=dict)
    #: domain key -> cause -> ticks of member time the trace could not decide (a lost switch)
    uncertain_ticks: dict[str, dict[str, int]] = field(default_factory=dict)
    #: window the source itself defines, if any (e.g. a recording's start/stop)
    start_ticks: int | None = None
    end_ticks: int | None = None

    def count(self, anomaly: str, n: int = 1) -> None:
        self.anomalies[anomaly] = self.anomalies.get(anomaly, 0) + n


class Source(Protocol):
    info: SourceInfo
    registry: Registry
    #: True if ``batches()`` may be called again to re-read from the start
    rereadable: bool

    def batches(self) -> Iterator[EventBatch]:
        """Yield time-sorted batches; rows never precede those already yielded."""
        ...


class Prefetcher(Protocol):
    """Starts reading a file before its reader opens it, on threads of its own.

    A command that knows its input calls it (through ``registry.prefetch``) before
    it loads the analysis, which takes a core for a tenth of a second (numpy): a
    reader can scan the file on another core meanwhile.  It lives in a module
    without numpy, returns at once, and never fails: whatever is in the way is
    left for ``open`` to meet.  What it reads is the reader's to pick up in
    ``open``, and only for the very file it read (same path and options, and
    the file unchanged since); otherwise the reader reads the file as usual.
    """

    def __call__(self, path: str, options: ReadOptions, whole: bool) -> None:
        """Start on ``path``; ``whole``: the analysis will account the whole trace in
        exact mode, as one run (no window, no intervals), so a reader may do that
        too."""
        ...


class Reader(Protocol):
    FORMAT: FormatInfo

    def sniff(self, path: str, head: bytes) -> bool:
        """True if ``head`` (the first bytes; empty for a directory) looks like this format."""
        ...

    def open(self, path: str, stream: IO[bytes] | None, options: ReadOptions) -> Source:
        """Open ``path`` (or read ``stream`` when the path is ``-``)."""
        ...
