"""Advice for people (text) and for programs (JSON, schema ``runstate.advice/1``).

Also turns a :class:`Report` into the figures the rules read, so that
``runstate advise`` on a trace judges exactly what ``runstate report`` prints.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from runstate.analysis.advice import (
    SCHEMA,
    DomainAdvice,
    DomainFigures,
    Finding,
    Rule,
    Thresholds,
)
from runstate.model.states import DomainState
from runstate.report.model import Report

#: why each rule matters, in a sentence for people
WHY: dict[Rule, str] = {
    Rule.MORE_VCPUS: "all of its vCPUs were running at once: it used every vCPU it has",
    Rule.HOST_OVERCOMMITTED: "its vCPUs waited for a host CPU while none of them ran",
    Rule.FEWER_VCPUS: "some vCPUs ran while their siblings waited for a CPU; a guest lock "
                      "held by a waiting vCPU makes the running ones spin",
}


@dataclass(frozen=True, slots=True)
class AdviceWindow:
    """Where the advice comes from, for the header and the JSON."""

    source: str
    start_ns: int
    end_ns: int


def figures_from_report(report: Report) -> list[DomainFigures]:
    """One :class:`DomainFigures` per domain of the report (intervals included)."""
    figures = []
    for row in report.domains:
        hazard = row.states[DomainState.CONCURRENCY_HAZARD]
        figures.append(DomainFigures(
            domain=row.domain,
            name=row.name,
            members=max(row.members_seen, row.members_expected or 0),
            states_ns={s: row.states[s].ns for s in DomainState},
            hazard_p95_ns=hazard.p95_ns if hazard.count else None,
            hazard_max_ns=hazard.max_ns if hazard.count else None,
            intervals=tuple(i.domains[row.domain] for i in report.intervals
                            if row.domain in i.domains),
        ))
    return figures


def finding_to_dict(finding: Finding) -> dict[str, object]:
    return {
        "rule": finding.rule.value,
        "level": finding.level.label,
        "share": finding.share,
        "action": finding.action,
        "evidence": finding.evidence,
    }


def advice_to_dict(advice: Sequence[DomainAdvice], thresholds: Thresholds,
                   window: AdviceWindow | None = None) -> dict[str, object]:
    """The stable JSON document (schema ``runstate.advice/1``)."""
    doc: dict[str, object] = {"schema": SCHEMA}
    if window is not None:
        doc["source"] = window.source
        doc["window"] = {"start_ns": window.start_ns, "end_ns": window.end_ns}
    doc["domains"] = [
        {
            "domain": d.domain,
            "name": d.name,
            "lifetime_ns": d.lifetime_ns,
            "lost_share": round(d.lost_share, 6),
            "findings": [finding_to_dict(f) for f in d.findings],
            "notes": list(d.notes),
        }
        for d in advice
    ]
    doc["thresholds"] = thresholds.as_dict()
    return doc


def render_advice_json(advice: Sequence[DomainAdvice], thresholds: Thresholds,
                       window: AdviceWindow | None = None) -> str:
    return json.dumps(advice_to_dict(advice, thresholds, window), indent=2) + "\n"


def render_advice_text(advice: Sequence[DomainAdvice], thresholds: Thresholds,
                       window: AdviceWindow | None = None) -> str:
    """What, why and what to do, for each domain with a finding or a note."""
    lines = []
    if window is not None:
        seconds = (window.end_ns - window.start_ns) / 1e9
        lines.append(f"{window.source}: {seconds:.3f} s window")
    shown = [d for d in advice if d.findings or d.notes]
    for domain in shown:
        lines.append("")
        lines.append(f"{_title(domain)}, lifetime {domain.lifetime_ns / 1e9:.3f} s")
        for finding in domain.findings:
            lines.extend(_finding_lines(finding))
        lines.extend(f"  note: {n}" for n in domain.notes)
    quiet = len(advice) - sum(1 for d in advice if d.findings)
    lines.append("")
    lines.append(f"{len(advice)} domain(s) checked: {len(advice) - quiet} with findings, "
                 f"{quiet} without")
    slice_ms = thresholds.hazard_slice_ns / 1e6
    lines.append(f"thresholds (low/medium/high/critical): full_run "
                 f"{_levels(thresholds.full_run.as_tuple())}, contention "
                 f"{_levels(thresholds.contention.as_tuple())},")
    lines.append(f"  concurrency_hazard {_levels(thresholds.concurrency_hazard.as_tuple())}, "
                 f"hazard slice {slice_ms:g} ms")
    return "\n".join(lines).lstrip("\n") + "\n"


def _title(domain: DomainAdvice) -> str:
    """``web1 (vm:1234)``; a domain known only by its id (a Xen domid) is ``domain 3``."""
    if domain.name == domain.domain:
        return f"domain {domain.domain}"
    return f"{domain.name} ({domain.domain})"


def _levels(bounds: tuple[float, ...]) -> str:
    return "/".join(f"{b * 100:g}" for b in bounds) + " %"


#: finding details start under the rule name
DETAIL_INDENT = " " * 11


def _wrapped(label: str, text: str, width: int = 96) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=DETAIL_INDENT + label,
                         subsequent_indent=DETAIL_INDENT + " " * len(label))


def _finding_lines(finding: Finding) -> list[str]:
    ev = finding.evidence
    shares = ", ".join(f"{k.removesuffix('_share')} {float(v) * 100:.1f}%"  # type: ignore[arg-type]
                       for k, v in ev.items() if k.endswith("_share"))
    threshold = float(ev["threshold"])  # type: ignore[arg-type]
    lines = [
        f"  {finding.level.label.upper():8} {finding.rule.value}: {finding.share * 100:.1f}% "
        f"of the lifetime ({shares}; {ev['share_level']} from {threshold * 100:g}%)",
        *_wrapped("why: ", WHY[finding.rule]),
        *_wrapped("do:  ", finding.action),
    ]
    if "episode_p95_ns" in ev:
        p95_ms = int(ev["episode_p95_ns"]) / 1e6  # type: ignore[call-overload]
        slice_ms = int(ev["slice_ns"]) / 1e6  # type: ignore[call-overload]
        verdict = (f"longer than the {slice_ms:g} ms slice: level raised"
                   if p95_ms > slice_ms else f"within the {slice_ms:g} ms slice")
        lines.append(f"{DETAIL_INDENT}hazard episodes: p95 {p95_ms:.2f} ms, {verdict}")
    if "intervals" in ev:
        lines.append(f"{DETAIL_INDENT}fired in {ev['intervals_fired']} of {ev['intervals']} "
                     f"intervals ({ev.get('pattern', 'no interval')})")
    return lines
