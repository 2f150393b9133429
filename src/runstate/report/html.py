"""The HTML report: one self-contained file (no script, no external style, font or image).

Per source: the summary table with a share bar per domain, the pictures
(inline SVG from :mod:`runstate.report.plot`), per-member tables, the
intervals, host idleness, anomalies and notes.  The page is plain HTML and CSS,
readable on a laptop screen and printable (each source starts a new page).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from runstate.model.states import MEMBER_BUCKETS, DomainState
from runstate.report.model import DomainRow, Report
from runstate.report.palette import (
    DOMAIN_COLORS,
    DOMAIN_ORDER,
    LOST_EDGE,
    MEMBER_COLORS,
    label,
)
from runstate.report.plot import domain_title

#: interval rows shown per source (the CSV/JSON formats have all of them)
MAX_INTERVAL_ROWS = 400


@dataclass(frozen=True, slots=True)
class Section:
    """One source's report and its picture (SVG text, or None when none could be drawn)."""

    report: Report
    svg: str | None
    #: why there is no picture, or what the picture leaves out
    note: str = ""


def inline_svg(svg: str) -> str:
    """matplotlib's SVG file as an element to embed: no XML prolog, doctype or metadata.

    Those carry namespace and DTD addresses, which a self-contained page does
    not need (an inline ``<svg>`` in HTML has its namespace implied).
    """
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    return re.sub(r'<svg([^>]*?)\s(width|height)="[^"]*"', r"<svg\1", svg, count=2)


def render_html(sections: list[Section], title: str) -> str:
    body = "\n".join(_section(s) for s in sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{_css()}</style></head>\n<body>\n"
            f"<h1>{_e(title)}</h1>\n{_legend()}\n{body}\n</body></html>\n")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.6f}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "–"


def _section(s: Section) -> str:
    r = s.report
    parts = [f"<section><h2>{_e(r.source)}</h2>",
             f"<p class=\"meta\">{_e(r.format)}, clock {_e(r.clock)}"
             + (f", TSC {r.cpu_hz / 1e9:g} GHz" + (" (assumed)" if r.cpu_hz_assumed else "")
                if r.cpu_hz else "")
             + f" · window {_seconds(r.start_ns)} .. {_seconds(r.end_ns)} s"
             f" ({r.duration_ns / 1e9:.6f} s)</p>",
             _summary(r)]
    if s.svg is not None:
        parts.append(f"<figure>{inline_svg(s.svg)}<figcaption>State shares per time bin, "
                     "the domain state strip and member lanes; time in seconds of the "
                     "trace's clock.</figcaption></figure>")
    if s.note:
        parts.append(f"<p class=\"note\">{_e(s.note)}</p>")
    parts.append(_members(r))
    if r.host_idle:
        parts.append(_host(r))
    if r.intervals:
        parts.append(_intervals(r))
    parts.append(_footer(r))
    parts.append("</section>")
    return "\n".join(parts)


def _legend() -> str:
    items = "".join(f"<span><i class=\"sw s{int(s)}\"></i>{_e(label(s))}</span>"
                    for s in DOMAIN_ORDER)
    return f"<p class=\"legend\">{items}</p>"


def _bar(row: DomainRow) -> str:
    cells = "".join(
        f"<i class=\"s{int(s)}\" style=\"width:{100 * row.share(s):.3f}%\" "
        f"title=\"{_e(label(s))} {100 * row.share(s):.1f}%\"></i>"
        for s in DOMAIN_ORDER if row.states[s].ns)
    return f"<span class=\"bar\">{cells}</span>"


def _summary(r: Report) -> str:
    head = "".join(f"<th class=\"num\"><i class=\"sw s{int(s)}\"></i>{_e(label(s))} %</th>"
                   for s in DOMAIN_ORDER)
    rows = []
    for d in r.domains:
        seen = f"{d.members_seen}/{d.members_expected}" if d.members_expected else \
            str(d.members_seen)
        cells = "".join(f"<td class=\"num\">{_pct(d.states[s].ns, d.lifetime_ns)}</td>"
                        for s in DOMAIN_ORDER)
        rows.append(f"<tr><th>{_e(domain_title(d.domain, d.name))}</th>"
                    f"<td class=\"num\">{seen}</td>"
                    f"<td class=\"num\">{d.lifetime_ns / 1e9:.3f}</td>{cells}"
                    f"<td>{_bar(d)}</td></tr>")
    return ("<h3>Domains</h3><table class=\"summary\"><thead><tr><th>domain</th>"
            "<th class=\"num\">members</th><th class=\"num\">life s</th>"
            f"{head}<th>shares</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _members(r: Report) -> str:
    head = "".join(f"<th class=\"num\"><i class=\"sw m{i}\"></i>{b} s</th>"
                   for i, b in enumerate(MEMBER_BUCKETS))
    blocks = []
    open_ = " open" if len(r.domains) <= 8 else ""
    for d in r.domains:
        rows = "".join(
            f"<tr><th>{_e(m.name or m.member)}</th>"
            + "".join(f"<td class=\"num\">{m.ns[b] / 1e9:.6f}</td>" for b in MEMBER_BUCKETS)
            + "</tr>" for m in d.members)
        plural = "s" if len(d.members) != 1 else ""
        blocks.append(f"<details{open_}><summary>{_e(domain_title(d.domain, d.name))}: "
                      f"{len(d.members)} member{plural}</summary><table><thead><tr><th>member</th>"
                      f"{head}</tr></thead><tbody>{rows}</tbody></table></details>")
    return "<h3>Members</h3>" + "".join(blocks)


def _host(r: Report) -> str:
    rows = "".join(
        f"<tr><th>{_e(m.name or m.member)}</th><td class=\"num\">"
        f"{_pct(m.ns['running'], sum(m.ns.values()))}</td></tr>"
        for d in r.host_idle for m in d.members if sum(m.ns.values()))
    return ("<h3>Host CPU idleness</h3><table><thead><tr><th>CPU</th>"
            f"<th class=\"num\">idle %</th></tr></thead><tbody>{rows}</tbody></table>")


def _intervals(r: Report) -> str:
    names = {d.domain: domain_title(d.domain, d.name) for d in r.domains}
    head = "".join(f"<th class=\"num\"><i class=\"sw s{int(s)}\"></i>{_e(label(s))} %</th>"
                   for s in DOMAIN_ORDER)
    rows = []
    for iv in r.intervals[:MAX_INTERVAL_ROWS]:
        for key, ns in iv.domains.items():
            if key not in names:
                continue
            alive = sum(ns.values())
            cells = "".join(f"<td class=\"num\">{_pct(ns[s], alive)}</td>" for s in DOMAIN_ORDER)
            rows.append(f"<tr><td class=\"num\">{_seconds(iv.start_ns)}</td>"
                        f"<th>{_e(names[key])}</th>{cells}</tr>")
    more = len(r.intervals) - MAX_INTERVAL_ROWS
    note = f"<p class=\"note\">{more} more intervals: see --format csv.</p>" if more > 0 else ""
    return (f"<h3>Intervals</h3><details><summary>{len(r.intervals)} intervals</summary>"
            "<table><thead><tr><th class=\"num\">start s</th><th>domain</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}</details>")


def _footer(r: Report) -> str:
    anomalies = ", ".join(f"{_e(k)} {v}" for k, v in r.anomalies.items() if v) or "none"
    notes = "".join(f"<li>{_e(n)}</li>" for n in r.notes)
    return (f"<h3>Anomalies and notes</h3><p>anomalies: {anomalies}</p>"
            + (f"<ul>{notes}</ul>" if notes else ""))


def _css() -> str:
    swatches = "".join(f".s{int(s)}{{background:{c}}}" for s, c in DOMAIN_COLORS.items())
    swatches += "".join(f".m{i}{{background:{MEMBER_COLORS[b]}}}"
                        for i, b in enumerate(MEMBER_BUCKETS))
    lost = int(DomainState.LOST)
    hatch = (f"repeating-linear-gradient(135deg,{LOST_EDGE} 0 1px,transparent 1px 5px),"
             f"{DOMAIN_COLORS[DomainState.LOST]}")
    return f"""
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#222;max-width:1200px;margin:1.5em auto;padding:0 1em}}
h1{{font-size:1.5em;margin:.2em 0}} h2{{font-size:1.2em;border-bottom:2px solid #ddd;
padding-bottom:.2em;word-break:break-all}} h3{{font-size:1.05em;margin:1.2em 0 .4em}}
.meta,.note,figcaption{{color:#555;font-size:.9em}}
table{{border-collapse:collapse;margin:.3em 0 1em;font-variant-numeric:tabular-nums}}
th,td{{padding:.2em .55em;border-bottom:1px solid #e4e4e4;text-align:left;
vertical-align:middle}} thead th{{font-weight:600;font-size:.85em;border-bottom:2px solid #bbb}}
.num{{text-align:right}} tbody th{{font-weight:500}}
.sw{{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:-.05em;
border:1px solid rgba(0,0,0,.25)}}
.legend span{{margin-right:1.2em;white-space:nowrap}}
.bar{{display:flex;width:14em;height:.9em;border:1px solid #999;background:#fff}}
.bar i{{display:block;height:100%}}
{swatches}
.s{lost},.m4{{background:{hatch}}}
figure{{margin:.5em 0 1em}} figure svg{{width:100%;height:auto;display:block}}
details{{margin:.2em 0}} summary{{cursor:pointer}}
@media print{{body{{max-width:none;margin:0;font-size:10pt}} section{{break-before:page}}
section:first-of-type{{break-before:auto}} details>*{{display:block}}
figure,tr{{break-inside:avoid}}
*{{-webkit-print-color-adjust:exact;print-color-adjust:exact}}}}
"""
