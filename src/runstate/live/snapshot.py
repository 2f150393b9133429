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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runstate.model.states import DomainState


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
class LiveSnapshot:
    """All domains at ``time_ns``."""

    time_ns: int
    #: when the monitor started counting (source clock, ns)
    started_ns: int
    #: "bpf" | "tracefs" | "stream"
    source: str
    n_cpus: int
    #: events the source reports lost so far (0 for bpf, which sees every event)
    lost_events: int
    domains: tuple[LiveDomain, ...]
    #: per CPU, ns idle since the start, when the source knows it
    cpu_idle_ns: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
