"""The report model: engine results converted to ns, ready for any output format.

The engine counts in ticks (ns, or TSC cycles for Xen).  Converting each state
total to ns on its own would break conservation by a few ns, so each domain's
(and each interval's) state times are apportioned: the whole converts once,
and the parts are floors plus the leftover ns given to the largest
remainders.  Exact cycles are kept beside ns for TSC sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runstate.engine.results import DomainResult, IntervalResult, RunResult
from runstate.model.states import MEMBER_BUCKETS, DomainState
from runstate.sources.base import SourceInfo

HOST_IDLE = "host-idle"


@dataclass(frozen=True, slots=True)
class Clock:
    """Converts ticks to ns: ``hz`` None means ticks already are ns."""

    hz: int | None = None
    #: tick shown as time 0 (a TSC trace's first record); ns clocks keep their own zero
    origin: int = 0

    @classmethod
    def of(cls, info: SourceInfo) -> Clock:
        if info.cpu_hz is None:
            return cls()
        return cls(int(round(info.cpu_hz)), info.origin if info.origin is not None else 0)

    def at(self, tick: int) -> int:
        """A point in time, in ns since the clock's zero."""
        return self.ns(tick - self.origin)

    def ns(self, ticks: int) -> int:
        if self.hz is None:
            return ticks
        return (ticks * 1_000_000_000 + self.hz // 2) // self.hz

    def apportion(self, parts: list[int]) -> list[int]:
        """Convert parts so that they add up exactly to the converted total."""
        hz = self.hz
        if hz is None:
            return list(parts)
        scaled = [p * 1_000_000_000 for p in parts]
        floors = [s // hz for s in scaled]
        short = self.ns(sum(parts)) - sum(floors)
        order = sorted(range(len(parts)), key=lambda i: (-(scaled[i] % hz), i))
        for i in order[:max(short, 0)]:
            floors[i] += 1
        return floors


@dataclass(frozen=True, slots=True)
class StateRow:
    """One domain state of a domain: its time (ns, and cycles for TSC traces) and its
    episodes' count and duration percentiles."""

    ns: int
    cycles: int | None
    count: int
    p50_ns: int
    p95_ns: int
    p99_ns: int
    max_ns: int


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One member (vCPU, thread) of a domain: ns per member bucket."""

    member: str
    name: str
    ns: dict[str, int]


@dataclass(frozen=True, slots=True)
class DomainRow:
    """One domain of a report: its lifetime, its seven states and its members."""

    domain: str
    name: str
    lifetime_ns: int
    lifetime_cycles: int | None
    members_seen: int
    members_expected: int | None
    states: dict[DomainState, StateRow]
    current_state: DomainState | None
    changes: int
    lost_intervals: int
    members: tuple[MemberRow, ...]
    #: cause -> ns of member time the trace could not decide (summed over members):
    #: ``lost_switch``/``lost_wakeup`` are shown as lost; ``detected_late`` is time shown
    #: in the state believed then, before the loss that makes it uncertain was seen
    uncertain: dict[str, int] = field(default_factory=dict)

    def share(self, state: DomainState) -> float:
        """Fraction of the lifetime spent in ``state`` (0 when the domain never lived)."""
        return self.states[state].ns / self.lifetime_ns if self.lifetime_ns else 0.0


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """One ``--interval`` row: ns per state of every domain alive in it."""

    start_ns: int
    end_ns: int
    #: domain key -> ns per state (alive domains only)
    domains: dict[str, dict[DomainState, int]]


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report prints, in ns."""

    source: str
    format: str
    clock: str
    cpu_hz: float | None
    cpu_hz_assumed: bool
    start_ns: int
    end_ns: int
    domains: tuple[DomainRow, ...]
    host_idle: tuple[DomainRow, ...]
    intervals: tuple[IntervalRow, ...]
    anomalies: dict[str, int]
    notes: tuple[str, ...] = field(default_factory=tuple)
    provisional: bool = False

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def build_report(result: RunResult, info: SourceInfo,
                 names: dict[str, str] | None = None) -> Report:
    """Convert an engine result (ticks) and its source's facts into a :class:`Report`."""
    clock = Clock.of(info)
    ordered = sorted(result.domains, key=lambda d: _natural(d.key))
    uncertain = info.uncertain_ticks
    rows = [_domain_row(d, clock, info.cpu_hz is not None, uncertain.get(d.key, {}))
            for d in ordered]
    idle_keys = {d.key for d in result.domains if d.tags.get("kind") == HOST_IDLE}
    notes = list(info.notes)
    if result.provisional:
        notes.append("one-pass read: members count from their first record")
    drops = dropped_events_note(result.anomalies | info.anomalies, uncertain, clock)
    if drops:
        notes.append(drops)
    return Report(
        source=info.path,
        format=info.format,
        clock=info.clock,
        cpu_hz=info.cpu_hz,
        cpu_hz_assumed=info.cpu_hz_assumed,
        start_ns=clock.at(result.start_ticks),
        end_ns=clock.at(result.end_ticks),
        domains=tuple(r for r in rows if r.domain not in idle_keys),
        host_idle=tuple(r for r in rows if r.domain in idle_keys and r.lifetime_ns > 0),
        intervals=tuple(interval_row(i, clock) for i in result.intervals),
        anomalies={k: v for k, v in sorted(result.anomalies.items())},
        notes=tuple(notes),
        provisional=result.provisional,
    )


#: what each anomaly means for the figures: exact anyway, shown as lost, or not bounded
ANOMALY_EFFECT = {
    "switch_chain_breaks": "shown as lost",     # a switch missing: its span is lost
    "chain_repairs": "shown as lost",
    "chain_repairs_unproven": "shown as lost",  # ... up to the task's next event
    "switch_in_time_unknown": "shown as lost",  # ... and the wakeup before it
    "switch_in_not_runnable": "shown as lost",  # a wakeup missing
    "wakeup_of_running": "exact",               # legal: woken before it switched out
    "lost_events": "shown as lost",             # the tracer said so: a loss window
    "loss_window_clamped": "not bounded",
    "switch_out_not_running": "not bounded",
    "event_after_exit": "not bounded",
    "time_backwards": "not bounded",
    "silent_runnable_unresolved": "left out",
}
#: the undecidable-span causes a source counts, as the footer names them
SPAN_CAUSE_LABELS = {"lost_switch": "lost switch", "lost_wakeup": "lost wakeup",
                     "detected_late": "before it was seen"}
BPF_HINT = ("a live `runstate top --source bpf` on this host finds such a drop within a "
            "timer tick (it checks in the kernel which task each CPU runs)")


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms"


def total_uncertain(report: Report) -> dict[str, int]:
    """Cause -> ns of undecidable member time over every domain (host idle included)."""
    out: dict[str, int] = {}
    for d in (*report.domains, *report.host_idle):
        for cause, ns in d.uncertain.items():
            out[cause] = out.get(cause, 0) + ns
    return out


def anomaly_line(report: Report) -> str:
    """The footer's anomaly counts, each with what it means for the figures."""
    nonzero = {k: v for k, v in report.anomalies.items() if v}
    if not nonzero:
        return "anomalies: none"
    parts = [f"{k} {v}" + (f" ({ANOMALY_EFFECT[k]})" if k in ANOMALY_EFFECT else "")
             for k, v in nonzero.items()]
    return "anomalies: " + ", ".join(parts)


def uncertain_line(report: Report) -> str | None:
    """How much member time the trace could not decide, and why (None: all decided)."""
    causes = total_uncertain(report)
    shown_lost = {c: ns for c, ns in causes.items() if c != "detected_late" and ns}
    late = causes.get("detected_late", 0)
    if not shown_lost and not late:
        return None
    text = "uncertain: " + ", ".join(f"{SPAN_CAUSE_LABELS.get(c, c)} {_ms(ns)}"
                                     for c, ns in shown_lost.items())
    text += " of member time, shown as lost" if shown_lost else ""
    if late:
        text += ("; " if shown_lost else "") + \
            f"{_ms(late)} shown as believed before a loss was seen (uncertain, not lost)"
    return text


def host_idle_line(report: Report) -> str:
    """Each CPU's idle share; time the trace cannot tell is said, never shown as busy."""
    parts = []
    for d in report.host_idle:
        for m in d.members:
            if not report.duration_ns:
                parts.append(f"cpu{m.member} -")
                continue
            idle, lost = m.ns["running"], m.ns["lost"]
            if lost >= report.duration_ns:
                parts.append(f"cpu{m.member} unknown")
            elif lost:
                parts.append(f"cpu{m.member} {100 * idle / report.duration_ns:.1f}% "
                             f"(+{100 * lost / report.duration_ns:.1f}% unknown)")
            else:
                parts.append(f"cpu{m.member} {100 * idle / report.duration_ns:.1f}%")
    return "host idle: " + (", ".join(parts) if parts else "no data")


def dropped_events_note(anomalies: dict[str, int], uncertain_ticks: dict[str, dict[str, int]],
                        clock: Clock) -> str | None:
    """A note for traces that lost scheduler events without saying so."""
    breaks = anomalies.get("switch_chain_breaks", 0)
    wakeups = anomalies.get("switch_in_not_runnable", 0)
    if not breaks and not wakeups:
        return None
    lost = clock.ns(sum(ticks for causes in uncertain_ticks.values()
                        for c, ticks in causes.items() if c != "detected_late"))
    return (f"the tracer dropped scheduler events without saying so ({breaks} switch chain "
            f"breaks, {wakeups} unexpected switch-ins); what they would have decided, "
            f"{_ms(lost)} of member time, is shown as lost; {BPF_HINT}")


def _natural(key: str) -> tuple[int, int, str]:
    """Numeric ids (Xen domids, pids) in numeric order, then names."""
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def interval_row(interval: IntervalResult, clock: Clock) -> IntervalRow:
    domains = {}
    for key, states in interval.domains.items():
        ns = clock.apportion([states[s] for s in DomainState])
        domains[key] = dict(zip(DomainState, ns, strict=True))
    return IntervalRow(clock.at(interval.start_ticks), clock.at(interval.end_ticks), domains)


def _domain_row(d: DomainResult, clock: Clock, with_cycles: bool,
                uncertain: dict[str, int]) -> DomainRow:
    ns = clock.apportion([d.states[s].ticks for s in DomainState])
    states = {
        s: StateRow(
            ns=ns[i],
            cycles=d.states[s].ticks if with_cycles else None,
            count=d.states[s].count,
            p50_ns=clock.ns(d.states[s].p50_ticks),
            p95_ns=clock.ns(d.states[s].p95_ticks),
            p99_ns=clock.ns(d.states[s].p99_ticks),
            max_ns=clock.ns(d.states[s].max_ticks),
        )
        for i, s in enumerate(DomainState)
    }
    members = tuple(
        MemberRow(m.key, m.name,
                  dict(zip(MEMBER_BUCKETS, clock.apportion([m.ticks[b] for b in MEMBER_BUCKETS]),
                           strict=True)))
        for m in sorted(d.members, key=lambda m: _natural(m.key))
    )
    return DomainRow(
        domain=d.key,
        name=d.name,
        lifetime_ns=sum(ns),
        lifetime_cycles=d.lifetime_ticks if with_cycles else None,
        members_seen=d.members_seen,
        members_expected=d.members_expected,
        states=states,
        current_state=d.current_state,
        changes=d.changes,
        lost_intervals=d.lost_intervals,
        members=members,
        uncertain={cause: clock.ns(ticks) for cause, ticks in sorted(uncertain.items())},
    )
