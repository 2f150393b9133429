"""What a command hands a reader, in a module that loads nothing else.

A report starts reading its file on another core (``registry.prefetch``) as
soon as it knows the file, and every module loaded before that point delays
the read.  The ``dataclasses`` module alone (with ``inspect``, ``ast`` and
``dis``) costs about 8 ms, and defining a frozen dataclass about half a
millisecond.  So the few records needed on that path are plain slotted
classes, with the equality and ``repr`` a dataclass would give them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing's, without importing typing ahead of the read
if TYPE_CHECKING:
    import os

#: default number of rows per batch; large enough to amortize Python overhead,
#: small enough to keep memory flat
CHUNK_ROWS = 1 << 18


class PlainRecord:
    """Equality and ``repr`` over ``__slots__``, as a dataclass has them (and, with
    ``__eq__`` defined here, no hash: a subclass that is a constant adds one)."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class FormatInfo(PlainRecord):
    """Describes one input format for the registry and ``--input-format``."""

    __slots__ = ("name", "description", "priority")

    def __init__(self, name: str, description: str, priority: int) -> None:
        self.name = name
        self.description = description
        #: lower sniffs first: formats with a magic number before loose text heuristics
        self.priority = priority

    def __hash__(self) -> int:  # a constant of the registry: hashable, as a frozen dataclass
        return hash(self._values())


class ReadOptions(PlainRecord):
    """Options a reader may honour; each reader ignores what does not apply to it."""

    __slots__ = ("cpu_hz", "group", "strict", "lenient", "chunk_rows")

    def __init__(self, cpu_hz: float | None = None, group: str | None = None,
                 strict: bool = False, lenient: bool = False,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        #: Xen: TSC frequency in Hz (None: the reader assumes its default and says so)
        self.cpu_hz = cpu_hz
        #: Linux: how threads form domains: vm | process | cgroup | thread | <path>
        self.group = group
        #: make counted anomalies fatal
        self.strict = strict
        #: skip and count corrupt records instead of failing
        self.lenient = lenient
        self.chunk_rows = chunk_rows


#: what identifies a file's contents for a prefetcher: (device, inode, size,
#: modification and change times in ns); a read started ahead is trusted only
#: while the file at its path still has the identity it had when it started
FileIdentity = tuple[int, int, int, int, int]


def file_identity(st: os.stat_result) -> FileIdentity:
    """The identity of the file ``st`` describes."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
