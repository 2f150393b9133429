"""Advice: what a person or a load balancer should do about a domain's runstates.

The domain runstates exist so that someone acts on them.  Three rules turn a
domain's state shares into findings, each at a level (low, medium, high,
critical) and with the figures that fired it:

* ``more_vcpus``: ``full_run`` share -- every member runs; the domain uses all
  the vCPUs it has and may need more.
* ``host_overcommitted``: ``full_contention`` + ``partial_contention`` share --
  members wait for a CPU while none of them runs; the host is too busy.
* ``fewer_vcpus``: ``concurrency_hazard`` share -- some members run while
  siblings wait (lock-holder preemption risk); the domain has more vCPUs than
  the host can run together.  Long hazard episodes make it worse: when their
  95th percentile outlasts a scheduler time slice, a preempted lock holder
  stays off the CPU for a whole slice while its siblings spin, so the level is
  raised by one.

The default levels are those of XenServer's Workload Balancing: 5/10/25/50 %
for the contention states, 25/50/80/90 % for ``full_run``.  The default slice
is Linux's scheduler base slice on a host of 8 or more CPUs (``base_slice_ns``:
0.75 ms scaled by 1 + log2 of the CPUs, at most 8 of them, so 3 ms; 1.5 ms on 2
CPUs); on Xen's credit scheduler set ``hazard_slice_ms = 30`` (its time slice).

Shares are of the domain's lifetime in the window, as ``runstate report``
prints them.  Lost time is never a state: above ``lost_note`` it is stated
beside the findings, and a window more lost than ``lost_max`` raises none.

This module is pure: it takes figures and returns findings, no I/O.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum, IntEnum

from runstate.model.states import DomainState

SCHEMA = "runstate.advice/1"


class Level(IntEnum):
    """How urgent a finding is; ordered, so levels compare."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown level {text!r} (low, medium, high, critical)") from None


class Rule(Enum):
    """The advice rules, by the action they lead to."""

    MORE_VCPUS = "more_vcpus"
    HOST_OVERCOMMITTED = "host_overcommitted"
    FEWER_VCPUS = "fewer_vcpus"


#: the states each rule adds up
RULE_STATES: dict[Rule, tuple[DomainState, ...]] = {
    Rule.MORE_VCPUS: (DomainState.FULL_RUN,),
    Rule.HOST_OVERCOMMITTED: (DomainState.FULL_CONTENTION, DomainState.PARTIAL_CONTENTION),
    Rule.FEWER_VCPUS: (DomainState.CONCURRENCY_HAZARD,),
}

#: what to do, per rule
ACTIONS: dict[Rule, str] = {
    Rule.MORE_VCPUS: "add vCPUs (or move it to a host with faster CPUs)",
    Rule.HOST_OVERCOMMITTED: "move load off this host, or give the host more CPUs",
    Rule.FEWER_VCPUS: "remove vCPUs from it, or move load off its host",
}


@dataclass(frozen=True, slots=True)
class LevelBounds:
    """Shares (0..1) at which a rule reaches low, medium, high, critical."""

    low: float
    medium: float
    high: float
    critical: float

    def level(self, share: float) -> Level | None:
        """The highest level ``share`` reaches, or None below ``low``."""
        reached = None
        for level, bound in zip(Level, self.as_tuple(), strict=True):
            if share >= bound:
                reached = level
        return reached

    def bound(self, level: Level) -> float:
        return self.as_tuple()[level - 1]

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.low, self.medium, self.high, self.critical)


CONTENTION_DEFAULT = LevelBounds(0.05, 0.10, 0.25, 0.50)
FULL_RUN_DEFAULT = LevelBounds(0.25, 0.50, 0.80, 0.90)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Everything the rules compare against (all shares are fractions 0..1)."""

    full_run: LevelBounds = FULL_RUN_DEFAULT
    contention: LevelBounds = CONTENTION_DEFAULT
    concurrency_hazard: LevelBounds = CONTENTION_DEFAULT
    #: hazard episodes whose p95 outlasts this slice raise fewer_vcpus by one level
    hazard_slice_ns: int = 3_000_000
    #: lost time above this share is stated beside the findings
    lost_note: float = 0.05
    #: above this lost share the window raises no finding at all
    lost_max: float = 0.50
    #: with intervals: fired in at least this share of them is "sustained"
    sustained: float = 0.5

    def bounds(self, rule: Rule) -> LevelBounds:
        if rule is Rule.MORE_VCPUS:
            return self.full_run
        if rule is Rule.HOST_OVERCOMMITTED:
            return self.contention
        return self.concurrency_hazard

    def as_dict(self) -> dict[str, object]:
        """The thresholds as JSON / TOML would hold them (shares as fractions)."""
        return {
            "full_run": _bounds_dict(self.full_run),
            "contention": _bounds_dict(self.contention),
            "concurrency_hazard": _bounds_dict(self.concurrency_hazard),
            "hazard_slice_ms": self.hazard_slice_ns / 1e6,
            "lost_note": self.lost_note,
            "lost_max": self.lost_max,
            "sustained": self.sustained,
        }


#: the defaults, as one shared value
DEFAULT_THRESHOLDS = Thresholds()


def _bounds_dict(bounds: LevelBounds) -> dict[str, float]:
    return {level.label: bound for level, bound in zip(Level, bounds.as_tuple(), strict=True)}


def parse_thresholds(text: str, base: Thresholds = DEFAULT_THRESHOLDS) -> Thresholds:
    """Thresholds from TOML text; keys not given keep ``base``'s values.

    Shares are fractions (0.25) or percentage strings ("25%")::

        hazard_slice_ms = 30          # Xen credit scheduler
        lost_max = 0.5
        [full_run]
        high = 0.85
        [contention]                  # full_contention + partial_contention
        low = "3%"
        [concurrency_hazard]
        medium = 0.15

    Raises ValueError naming the key that is wrong.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"not valid TOML: {error}") from None
    changes: dict[str, object] = {}
    for key, value in data.items():
        if key in ("full_run", "contention", "concurrency_hazard"):
            changes[key] = _parse_bounds(key, value, getattr(base, key))
        elif key == "hazard_slice_ms":
            changes["hazard_slice_ns"] = round(_positive(key, value) * 1e6)
        elif key in ("lost_note", "lost_max", "sustained"):
            changes[key] = _share(key, value)
        else:
            known = "full_run, contention, concurrency_hazard, hazard_slice_ms, lost_note, " \
                    "lost_max, sustained"
            raise ValueError(f"unknown key {key!r} (known: {known})")
    return replace(base, **changes)  # type: ignore[arg-type]


def _parse_bounds(key: str, value: object, base: LevelBounds) -> LevelBounds:
    if not isinstance(value, dict):
        raise ValueError(f"[{key}] must be a table of low/medium/high/critical")
    values = {f.name: getattr(base, f.name) for f in fields(LevelBounds)}
    for name, item in value.items():
        if name not in values:
            raise ValueError(f"{key}.{name}: not a level (low, medium, high, critical)")
        values[name] = _share(f"{key}.{name}", item)
    bounds = LevelBounds(**values)
    ordered = bounds.as_tuple()
    if any(a > b for a, b in zip(ordered, ordered[1:], strict=False)):
        raise ValueError(f"[{key}]: levels must not decrease from low to critical")
    return bounds


def _share(key: str, value: object) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{key}: not a share: {value!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if number > 1:
            raise ValueError(f"{key}: a share is a fraction 0..1; write percentages as "
                             f"\"{value}%\"")
    else:
        raise ValueError(f"{key}: not a share: {value!r}")
    if not 0 <= number <= 1:
        raise ValueError(f"{key}: share out of range: {value!r}")
    return number


def _positive(key: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(f"{key}: must be a positive number: {value!r}")


@dataclass(frozen=True, slots=True)
class DomainFigures:
    """What the rules need to know about one domain in one window."""

    domain: str
    name: str
    #: members the domain has (or had) in the window
    members: int
    #: ns per state, the seven states; they add up to the lifetime
    states_ns: Mapping[DomainState, int]
    #: 95th percentile of concurrency_hazard episodes, when known
    hazard_p95_ns: int | None = None
    hazard_max_ns: int | None = None
    #: per interval, ns per state (empty without intervals)
    intervals: Sequence[Mapping[DomainState, int]] = ()

    @property
    def lifetime_ns(self) -> int:
        return sum(self.states_ns.values())

    def share(self, states: Sequence[DomainState]) -> float:
        life = self.lifetime_ns
        return sum(self.states_ns.get(s, 0) for s in states) / life if life else 0.0


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    level: Level
    #: the share (0..1) of the lifetime that fired the rule
    share: float
    action: str
    #: the figures that fired it (and, for the hazard rule, the episode lengths)
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DomainAdvice:
    domain: str
    name: str
    findings: tuple[Finding, ...]
    #: statements that are not findings (lost time, windows too lost to judge)
    notes: tuple[str, ...] = ()
    lifetime_ns: int = 0
    lost_share: float = 0.0

    @property
    def worst(self) -> Level | None:
        return max((f.level for f in self.findings), default=None)


def advise(domains: Sequence[DomainFigures], thresholds: Thresholds = DEFAULT_THRESHOLDS
           ) -> tuple[DomainAdvice, ...]:
    """The findings for each domain, in the order given."""
    return tuple(advise_domain(d, thresholds) for d in domains)


def advise_domain(figures: DomainFigures,
                  thresholds: Thresholds = DEFAULT_THRESHOLDS) -> DomainAdvice:
    """Apply every rule to one domain."""
    lost = figures.share((DomainState.LOST,))
    notes = []
    if figures.lifetime_ns == 0:
        return DomainAdvice(figures.domain, figures.name, (), ("no lifetime in the window",))
    if lost > thresholds.lost_note:
        notes.append(f"{lost:.1%} of the lifetime is lost (the data cannot say)")
    findings: list[Finding] = []
    if lost > thresholds.lost_max:
        notes.append(f"no finding: more than {thresholds.lost_max:.0%} of the lifetime is lost")
    else:
        for rule in Rule:
            finding = _apply(rule, figures, thresholds)
            if finding is not None:
                findings.append(finding)
    findings.sort(key=lambda f: -f.level)
    return DomainAdvice(figures.domain, figures.name, tuple(findings), tuple(notes),
                        figures.lifetime_ns, lost)


def _apply(rule: Rule, figures: DomainFigures, thresholds: Thresholds) -> Finding | None:
    if rule is Rule.FEWER_VCPUS and figures.members < 2:
        return None  # one member can never run while a sibling waits
    states = RULE_STATES[rule]
    share = figures.share(states)
    bounds = thresholds.bounds(rule)
    level = bounds.level(share)
    if level is None:
        return None
    evidence: dict[str, object] = {
        s.label + "_share": round(figures.share((s,)), 6) for s in states
    }
    evidence["lifetime_ns"] = figures.lifetime_ns
    evidence["members"] = figures.members
    evidence["threshold"] = bounds.bound(level)
    evidence["share_level"] = level.label
    if rule is Rule.FEWER_VCPUS:
        level = _hazard_episodes(figures, thresholds, level, evidence)
    if figures.intervals:
        _interval_evidence(rule, figures, thresholds, evidence)
    return Finding(rule, level, round(share, 6), ACTIONS[rule], evidence)


def _hazard_episodes(figures: DomainFigures, thresholds: Thresholds, level: Level,
                     evidence: dict[str, object]) -> Level:
    """Long hazard episodes raise the level by one; say so in the evidence."""
    evidence["slice_ns"] = thresholds.hazard_slice_ns
    if figures.hazard_p95_ns is None:
        evidence["episodes"] = "unknown: no episode lengths in live counters"
        return level
    evidence["episode_p95_ns"] = figures.hazard_p95_ns
    if figures.hazard_max_ns is not None:
        evidence["episode_max_ns"] = figures.hazard_max_ns
    if figures.hazard_p95_ns <= thresholds.hazard_slice_ns:
        evidence["episodes"] = "short: p95 within one scheduler slice"
        return level
    evidence["episodes"] = "long: p95 beyond one scheduler slice, level raised"
    return Level(min(level + 1, Level.CRITICAL))


def _interval_evidence(rule: Rule, figures: DomainFigures, thresholds: Thresholds,
                       evidence: dict[str, object]) -> None:
    """In how many intervals the rule fired on its own: sustained, or a spike."""
    bounds = thresholds.bounds(rule)
    alive = [i for i in figures.intervals if sum(i.values()) > 0]
    fired = 0
    for states_ns in alive:
        one = replace(figures, states_ns=states_ns, intervals=())
        if one.share((DomainState.LOST,)) <= thresholds.lost_max and \
                bounds.level(one.share(RULE_STATES[rule])) is not None:
            fired += 1
    evidence["intervals"] = len(alive)
    evidence["intervals_fired"] = fired
    if alive:
        sustained = fired >= thresholds.sustained * len(alive)
        evidence["pattern"] = "sustained" if sustained else "spike"


def reaches(advice: Sequence[DomainAdvice], level: Level) -> bool:
    """Whether any finding reaches ``level`` (for ``--fail-on``)."""
    return any(d.worst is not None and d.worst >= level for d in advice)
