"""The advice rules on figures built by hand: levels at the documented bounds, episodes,
lost time, intervals, thresholds files."""

from __future__ import annotations

import pytest

from runstate.analysis.advice import (
    DEFAULT_THRESHOLDS,
    DomainFigures,
    Level,
    Rule,
    Thresholds,
    advise_domain,
    parse_thresholds,
    reaches,
)
from runstate.model.states import DomainState as S

LIFE = 1_000_000_000


def figures(members: int = 4, p95: int | None = None, intervals=(), **shares: float):
    """A domain living 1 s with the given state shares (the rest blocked)."""
    ns = {s: round(shares.get(s.label, 0.0) * LIFE) for s in S}
    ns[S.BLOCKED] += LIFE - sum(ns.values())
    return DomainFigures("vm:1", "web", members, ns, hazard_p95_ns=p95,
                         hazard_max_ns=p95, intervals=intervals)


def found(fig: DomainFigures, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, str]:
    return {f.rule.value: f.level.label for f in advise_domain(fig, thresholds).findings}


# the bounds of XenServer's Workload Balancing: 25/50/80/90 % full_run, 5/10/25/50 % contention
@pytest.mark.parametrize(("share", "level"), [
    (0.24, None), (0.25, "low"), (0.49, "low"), (0.50, "medium"), (0.79, "medium"),
    (0.80, "high"), (0.89, "high"), (0.90, "critical"), (1.0, "critical")])
def test_more_vcpus_levels_follow_full_run_bounds(share, level):
    assert found(figures(full_run=share)).get("more_vcpus") == level


@pytest.mark.parametrize(("fc", "pc", "level"), [
    (0.02, 0.02, None), (0.03, 0.02, "low"), (0.0, 0.10, "medium"), (0.2, 0.04, "medium"),
    (0.2, 0.05, "high"), (0.3, 0.2, "critical")])
def test_host_overcommitted_adds_both_contention_states(fc, pc, level):
    result = found(figures(full_contention=fc, partial_contention=pc))
    assert result.get("host_overcommitted") == level


@pytest.mark.parametrize(("share", "level"), [
    (0.04, None), (0.05, "low"), (0.10, "medium"), (0.25, "high"), (0.5, "critical")])
def test_fewer_vcpus_levels_with_short_episodes(share, level):
    assert found(figures(concurrency_hazard=share, p95=1_000_000)).get("fewer_vcpus") == level


def test_long_hazard_episodes_raise_the_level_and_are_named():
    short = advise_domain(figures(concurrency_hazard=0.12, p95=2_900_000)).findings[0]
    long = advise_domain(figures(concurrency_hazard=0.12, p95=3_100_000)).findings[0]
    assert (short.level, long.level) == (Level.MEDIUM, Level.HIGH)
    assert long.evidence["episode_p95_ns"] == 3_100_000
    assert long.evidence["slice_ns"] == 3_000_000
    assert long.evidence["share_level"] == "medium"
    # on Xen's credit scheduler (30 ms slice) the same episodes are short
    xen = parse_thresholds("hazard_slice_ms = 30")
    assert advise_domain(figures(concurrency_hazard=0.12, p95=3_100_000), xen) \
        .findings[0].level is Level.MEDIUM
    # critical stays critical
    assert advise_domain(figures(concurrency_hazard=0.6, p95=10**8)).findings[0].level \
        is Level.CRITICAL


def test_a_single_member_has_no_hazard_rule():
    # one member cannot run while a sibling waits, whatever the figures claim
    assert "fewer_vcpus" not in found(figures(members=1, concurrency_hazard=0.3))


def test_mostly_blocked_or_partial_run_gets_no_finding():
    assert found(figures(partial_run=0.6)) == {}
    assert found(figures(partial_run=0.2, full_run=0.2, concurrency_hazard=0.04,
                         full_contention=0.02, partial_contention=0.02)) == {}


def test_lost_time_is_stated_and_a_mostly_lost_window_raises_nothing():
    some = advise_domain(figures(lost=0.08, full_run=0.9))
    assert [f.rule for f in some.findings] == [Rule.MORE_VCPUS]
    assert any("8.0%" in n and "lost" in n for n in some.notes)
    mostly = advise_domain(figures(lost=0.6, full_contention=0.4))
    assert mostly.findings == ()
    assert any("no finding" in n for n in mostly.notes)
    quiet = advise_domain(figures(lost=0.01, full_run=0.9))
    assert quiet.notes == ()


def test_intervals_tell_sustained_from_spike():
    burst = {s: 0 for s in S} | {S.FULL_CONTENTION: 10**8}
    calm = {s: 0 for s in S} | {S.BLOCKED: 10**8}
    spike = figures(full_contention=0.1, intervals=[burst] + [calm] * 9)
    steady = figures(full_contention=0.1, intervals=[burst, calm] * 5)
    spike_ev = advise_domain(spike).findings[0].evidence
    steady_ev = advise_domain(steady).findings[0].evidence
    assert (spike_ev["intervals_fired"], spike_ev["intervals"], spike_ev["pattern"]) == \
        (1, 10, "spike")
    assert (steady_ev["intervals_fired"], steady_ev["pattern"]) == (5, "sustained")


def test_findings_sorted_worst_first_and_fail_on():
    advice = advise_domain(figures(full_run=0.3, full_contention=0.3))
    assert [f.rule for f in advice.findings] == [Rule.HOST_OVERCOMMITTED, Rule.MORE_VCPUS]
    assert reaches([advice], Level.HIGH)
    assert not reaches([advice], Level.CRITICAL)


def test_thresholds_file_overrides_only_what_it_names():
    t = parse_thresholds('[full_run]\nhigh = 0.85\n[contention]\nlow = "3%"\n')
    assert t.full_run.as_tuple() == (0.25, 0.5, 0.85, 0.9)
    assert t.contention.low == pytest.approx(0.03)
    assert t.concurrency_hazard.low == 0.05  # separate table, unchanged
    assert found(figures(full_run=0.82), t)["more_vcpus"] == "medium"
    assert found(figures(full_contention=0.04), t)["host_overcommitted"] == "low"


@pytest.mark.parametrize(("text", "fragment"), [
    ("[full_run]\nhigh = 85", "write percentages"),
    ("[full_run]\nhuge = 0.5", "not a level"),
    ("[contention]\nlow = 0.3\nmedium = 0.2", "must not decrease"),
    ("colour = 1", "unknown key"),
    ("hazard_slice_ms = -1", "positive"),
    ("[full_run", "not valid TOML"),
])
def test_bad_thresholds_name_the_key(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_thresholds(text)
