"""What a live monitor hands its readers: the per-domain counters at one moment.

These records are the contract between the live sources (eBPF in-kernel
counters, an incremental tracefs reader, a stream) and everything that reads
them (``runstate top``, ``runstate serve``, ``runstate advise`` on a live host,
other programs).  They mirror what the domain runstate design keeps per domain
inside a hypervisor: the current state, when it was entered, the time spent in
each state so far, and how many changes were missed.

All times are integer nanoseconds on the source's clock (CLOCK_MONOTONIC for
the Linux sources).  ``totals_ns`` include the current, still open stay, so the
seven totals of a domain always add up to the time it has been watched while it
had members; differences of two snapshots give an interval.

A source that follows thousands of domains also gives them as columns
(:class:`DomainTable`); its :attr:`LiveSnapshot.domains` are then made from the
columns on first use, so a reader that takes the columns (``top --batch``)
pays for no per-domain record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
import numpy.typing as npt

from runstate.model.states import MEMBER_BUCKETS, DomainState

_STATES = tuple(DomainState)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which tasks a monitor follows and how they form domains.

    Like ``runstate record``: ``pids`` (processes, their threads and the threads
    they fork), ``vms`` (QEMU guests by ``-name``), or ``all_tasks``; ``group``
    is ``vm | process | cgroup | thread`` or the path of a group file.
    """

    pids: tuple[int, ...] = ()
    vms: tuple[str, ...] = ()
    all_tasks: bool = False
    group: str | None = None


@dataclass(frozen=True, slots=True)
class LiveMember:
    """One member (vCPU thread or task) of a domain."""

    key: str
    name: str
    #: "running" | "runnable" | "blocked" | "offline" | "lost"
    state: str
    #: ns per member bucket ("running", "runnable", "blocked", "offline", "lost")
    totals_ns: dict[str, int]


@dataclass(frozen=True, slots=True)
class LiveDomain:
    """The counters of one domain (VM, process, cgroup or group)."""

    key: str
    name: str
    #: members that exist now
    members: int
    #: None while the domain has no member that counts
    current_state: DomainState | None
    #: when the current state was entered (source clock, ns)
    since_ns: int | None
    #: ns per state since the monitor started, the current stay included
    totals_ns: dict[DomainState, int]
    #: state changes the source could not see (lost events, overruns)
    missed: int = 0
    member_rows: tuple[LiveMember, ...] = ()
    #: ns summed over the members in each member bucket ("running", "runnable",
    #: "blocked", ...) since the monitor started, exited members included; divided
    #: by members and time it gives the mean %run / %ready of a member
    member_ns: dict[str, int] = field(default_factory=dict)
    #: state changes since the monitor started
    changes: int = 0


@dataclass(frozen=True, slots=True)
class DomainTable:
    """The domains of a snapshot as columns, one row per domain (a :class:`LiveDomain`'s
    fields; ``state`` -1 where ``current_state`` is None)."""

    keys: list[str]
    names: list[str]
    members: npt.NDArray[np.int64]
    state: npt.NDArray[np.int8]
    since_ns: npt.NDArray[np.int64]
    #: ns per DomainState, in DomainState order
    totals_ns: npt.NDArray[np.int64]
    #: ns per member bucket, in MEMBER_BUCKETS order
    member_ns: npt.NDArray[np.int64]
    missed: npt.NDArray[np.int64]
    changes: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.state)

    def take(self, index: npt.NDArray[np.intp]) -> DomainTable:
        """Rows ``index``, in that order (keys and names too, where there are any)."""
        rows = index.tolist()
        return DomainTable(
            [self.keys[i] for i in rows] if self.keys else [],
            [self.names[i] for i in rows] if self.names else [],
            self.members[index], self.state[index], self.since_ns[index],
            self.totals_ns[index], self.member_ns[index], self.missed[index],
            self.changes[index])

    def domain(self, i: int, member_rows: tuple[LiveMember, ...] = ()) -> LiveDomain:
        """Row ``i`` as a record."""
        code = int(self.state[i])
        return LiveDomain(
            key=self.keys[i], name=self.names[i], members=int(self.members[i]),
            current_state=None if code < 0 else DomainState(code),
            since_ns=None if code < 0 else int(self.since_ns[i]),
            totals_ns=dict(zip(_STATES, self.totals_ns[i].tolist(), strict=True)),
            missed=int(self.missed[i]), member_rows=member_rows,
            member_ns=dict(zip(MEMBER_BUCKETS, self.member_ns[i].tolist(), strict=True)),
            changes=int(self.changes[i]))

    @classmethod
    def from_domains(cls, domains: Sequence[LiveDomain]) -> DomainTable:
        """The columns of records (for sources that make records)."""
        def ints(values: list[int] | list[list[int]]) -> npt.NDArray[np.int64]:
            return np.array(values, np.int64)

        return cls(
            keys=[d.key for d in domains], names=[d.name for d in domains],
            members=ints([d.members for d in domains]),
            state=np.array([-1 if d.current_state is None else int(d.current_state)
                            for d in domains], np.int8),
            since_ns=ints([d.since_ns or 0 for d in domains]),
            totals_ns=ints([[d.totals_ns.get(s, 0) for s in _STATES] for d in domains]
                           ).reshape(len(domains), len(_STATES)),
            member_ns=ints([[d.member_ns.get(b, 0) for b in MEMBER_BUCKETS] for d in domains]
                           ).reshape(len(domains), len(MEMBER_BUCKETS)),
            missed=ints([d.missed for d in domains]),
            changes=ints([d.changes for d in domains]))


class TableDomains(Sequence[LiveDomain]):
    """The domains of a :class:`DomainTable` as records, made all at once on first use."""

    def __init__(self, table: DomainTable,
                 member_rows: Sequence[tuple[LiveMember, ...]] | None = None) -> None:
        self.table = table
        self._member_rows = member_rows
        self._records: tuple[LiveDomain, ...] | None = None

    def _all(self) -> tuple[LiveDomain, ...]:
        if self._records is None:
            rows = self._member_rows
            self._records = tuple(self.table.domain(i, rows[i] if rows is not None else ())
                                  for i in range(len(self.table)))
        return self._records

    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_member_rows(self) -> bool:
        return self._member_rows is not None

    @overload
    def __getitem__(self, index: int) -> LiveDomain: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[LiveDomain]: ...

    def __getitem__(self, index: int | slice) -> LiveDomain | Sequence[LiveDomain]:
        return self._all()[index]

    def __iter__(self) -> Iterator[LiveDomain]:
        return iter(self._all())


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """All domains at ``time_ns``."""

    time_ns: int
    #: when the monitor started counting (source clock, ns)
    started_ns: int
    #: "bpf" | "tracefs" | "stream"
    source: str
    n_cpus: int
    #: events the source reports lost so far (0 for bpf, which has no buffer to overrun)
    lost_events: int
    domains: Sequence[LiveDomain]
    #: per CPU, ns idle since the start, when the source knows it
    cpu_idle_ns: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def table(self) -> DomainTable:
        """The domains as columns (made from the records where the source gave none)."""
        if isinstance(self.domains, TableDomains):
            return self.domains.table
        return DomainTable.from_domains(self.domains)

    @property
    def has_member_rows(self) -> bool:
        """Whether the domains carry their members' records."""
        if isinstance(self.domains, TableDomains):
            return self.domains.has_member_rows
        return any(d.member_rows for d in self.domains)
