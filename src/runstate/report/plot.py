"""Pictures of a run: per domain the state shares over time, the state strip, member lanes.

One panel per domain: a stacked area of the seven state shares per time bin
(read off the domain's slices, which add up to the report's times), under it a
strip of the domain state itself, and, when the window is short enough to
read, one lane per member.  Many domains become small multiples (area and
strip only).  matplotlib (the ``plot`` extra) draws with its Agg/SVG backends,
headless; colours come from :mod:`runstate.report.palette`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runstate.engine.timeline import Lane
from runstate.errors import EnvironmentProblem, UsageError
from runstate.model.registry import Registry
from runstate.model.states import MEMBER_BUCKETS, DomainState
from runstate.report.model import HOST_IDLE, Clock, Report
from runstate.report.palette import (
    DOMAIN_COLORS,
    DOMAIN_ORDER,
    LOST_EDGE,
    LOST_HATCH,
    MEMBER_COLORS,
    label,
)
from runstate.report.slices import SliceStore

F64 = npt.NDArray[np.float64]
#: member lanes are drawn for at most this many members per domain and panels per figure
MAX_LANES = 16
MAX_DETAILED = 6
#: a lane of more slices than this is not readable (and slow to draw): left out
MAX_LANE_SLICES = 20_000
#: a strip or lane of more slices than this is drawn as pixels inside an SVG or PDF
#: (thousands of sub-pixel rectangles only make the file large)
RASTER_SLICES = 1500
#: time bins of the share plot when no interval is given
DEFAULT_BINS = 120
CONTENTION = (DomainState.FULL_CONTENTION, DomainState.CONCURRENCY_HAZARD,
              DomainState.PARTIAL_CONTENTION)


@dataclass(frozen=True, slots=True)
class Slices:
    """Slices in seconds of the trace clock."""

    start: F64
    end: F64
    state: npt.NDArray[np.int8]


@dataclass(frozen=True, slots=True)
class Panel:
    """Everything drawn for one domain."""

    title: str
    edges: F64               # bin edges, s
    shares: F64              # [7, bins] fraction of each bin (DomainState order)
    strip: Slices
    lanes: tuple[tuple[str, Slices], ...]


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise EnvironmentProblem("plotting needs matplotlib: "
                                 "pip install 'runstate[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


# ---- data -------------------------------------------------------------------

def contention_ns(report: Report, key: str) -> int:
    row = next(r for r in report.domains if r.domain == key)
    return sum(row.states[s].ns for s in CONTENTION)


def panels(report: Report, store: SliceStore, registry: Registry, clock: Clock, *,
           interval_ns: int | None, keys: list[str] | None = None,
           lanes: bool = True) -> list[Panel]:
    """One panel per domain of ``keys`` (default: every non-host domain, report order)."""
    index = {d.key: i for i, d in enumerate(registry.domains)}
    chosen = keys if keys is not None else [r.domain for r in report.domains]
    members_of: dict[int, list[int]] = {}
    for m, member_info in enumerate(registry.members):
        members_of.setdefault(member_info.domain, []).append(m)
    span = report.end_ns - report.start_ns
    step = interval_ns if interval_ns else max(1, -(-span // DEFAULT_BINS))
    edges_ns = np.arange(report.start_ns, report.end_ns + step, step, dtype=np.int64)
    edges_ns[-1] = min(int(edges_ns[-1]), report.end_ns) if edges_ns.size > 1 else report.end_ns
    edges_ns = np.unique(np.r_[edges_ns, report.end_ns])
    out = []
    for key in chosen:
        d = index[key]
        info = registry.domains[d]
        strip = _seconds(store.of(Lane.DOMAIN, d), clock)
        title = domain_title(info.key, info.name)
        member_lanes: list[tuple[str, Slices]] = []
        ids = sorted(members_of.get(d, []), key=lambda m: _natural(registry.members[m].name
                                                                      or registry.members[m].key))
        if lanes and len(ids) <= MAX_LANES:
            for m in ids:
                lane = _seconds(store.of(Lane.MEMBER, m), clock)
                if lane.start.size > MAX_LANE_SLICES:
                    member_lanes = []
                    break
                member = registry.members[m]
                member_lanes.append((member.name or member.key, lane))
        shares = _shares(store.of(Lane.DOMAIN, d), clock, edges_ns)
        out.append(Panel(title, edges_ns / 1e9, shares, strip, tuple(member_lanes)))
    return out


def domain_title(key: str, name: str) -> str:
    """``web [vm:123]``; a bare number (a Xen domid) as ``domain 3``."""
    if name and name != key:
        return f"{name} [{key}]"
    return f"domain {key}" if key.isdigit() else key


def _natural(name: str) -> tuple[str, int]:
    """``vcpu10`` after ``vcpu9``: the trailing number as a number."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    return stem, int(digits) if digits else -1


def _seconds(columns: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                            npt.NDArray[np.int8]], clock: Clock) -> Slices:
    start, end, state = columns
    return Slices(_at(start, clock) / 1e9, _at(end, clock) / 1e9, state)


def _at(ticks: npt.NDArray[np.int64], clock: Clock) -> npt.NDArray[np.int64]:
    if clock.hz is None:
        return ticks
    return np.array([clock.at(t) for t in ticks.tolist()], np.int64)


def _shares(columns: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                           npt.NDArray[np.int8]], clock: Clock,
            edges: npt.NDArray[np.int64]) -> F64:
    """Per bin, the fraction of the bin's alive time in each state."""
    start, end, state = columns
    start, end = _at(start, clock), _at(end, clock)
    ns = np.zeros((len(DomainState), edges.size - 1), np.float64)
    for s in DomainState:
        pick = state == s
        if not pick.any():
            continue
        ns[int(s)] = np.diff(_covered(start[pick], end[pick], edges))
    alive = ns.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares: F64 = np.where(alive > 0, ns / np.where(alive > 0, alive, 1), 0.0)
    return shares


def _covered(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64],
             edges: npt.NDArray[np.int64]) -> F64:
    """Total length of the (sorted, disjoint) slices before each edge, in O(n + bins)."""
    cum = np.r_[0, np.cumsum(b - a)]
    full = np.searchsorted(b, edges, side="right")   # slices ending at or before the edge
    part = np.where(full < a.size, np.clip(edges - a[np.minimum(full, a.size - 1)], 0, None),
                    0)
    covered: F64 = (cum[full] + part).astype(np.float64)
    return covered


# ---- drawing ----------------------------------------------------------------

def render(panel_list: list[Panel], fmt: str, *, title: str) -> bytes:
    """The figure as PNG, SVG or PDF bytes."""
    plt = _matplotlib()
    if not panel_list:
        raise UsageError("no domain to plot")
    if len(panel_list) <= MAX_DETAILED:
        fig = _detailed(plt, panel_list, title)
    else:
        fig = _small_multiples(plt, panel_list, title)
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {}
    fig.savefig(buffer, format=fmt, dpi=110, metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()


def _detailed(plt: Any, panel_list: list[Panel], title: str) -> Any:
    ratios: list[float] = []
    for i, p in enumerate(panel_list):
        gap = [0.55] if i < len(panel_list) - 1 else []
        ratios += [3.2, 0.45] + ([0.3 * len(p.lanes) + 0.25] if p.lanes else []) + gap
    fig = plt.figure(figsize=(11, 0.55 + 0.62 * sum(ratios)), layout="constrained")
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    row = 0
    first_axis = None
    for p in panel_list:
        area = fig.add_subplot(grid[row], sharex=first_axis)
        first_axis = first_axis or area
        _area(area, p)
        area.set_title(p.title, loc="left", fontsize=11, fontweight="bold")
        strip = fig.add_subplot(grid[row + 1], sharex=area)
        _strip(strip, p.strip, DOMAIN_COLORS, "domain state")
        row += 2
        if p.lanes:
            lanes = fig.add_subplot(grid[row], sharex=area)
            _lanes(lanes, p.lanes)
            row += 1
        last = lanes if p.lanes else strip
        last.set_xlabel("time (s, trace clock)")
        last.tick_params(labelbottom=True)
        if row < len(ratios):
            fig.add_subplot(grid[row]).axis("off")  # a gap before the next domain
            row += 1
    fig.suptitle(title, fontsize=12)
    _legend(fig, with_members=any(p.lanes for p in panel_list))
    return fig


def _small_multiples(plt: Any, panel_list: list[Panel], title: str) -> Any:
    """A grid of compact panels, laid out by hand (a layout engine over a hundred axes
    takes a minute on a slow machine)."""
    cols = 5 if len(panel_list) > 24 else 4
    rows = -(-len(panel_list) // cols)
    cell_w, cell_h, top, bottom = 2.9, 1.75, 0.6, 0.75
    width, height = cell_w * cols + 0.3, cell_h * rows + top + bottom
    fig = plt.figure(figsize=(width, height))
    for i, p in enumerate(panel_list):
        x = 0.35 + cell_w * (i % cols)
        y = height - top - cell_h * (i // cols + 1)   # bottom of the cell, inches

        def box(left: float, bottom_: float, w: float, h: float) -> list[float]:
            return [left / width, bottom_ / height, w / width, h / height]

        # one axes per panel, the strip as a band under the shares (half the axes to lay
        # out and draw); every panel spans the same window
        area = fig.add_axes(box(x, y + 0.42, cell_w - 0.55, 1.08))
        _area(area, p, compact=True)
        _bars(area, p.strip, -17, [DOMAIN_COLORS[DomainState(int(c))]
                                   for c in range(len(DomainState))],
              DomainState.LOST, height=13)
        area.set_ylim(-19, 100)
        area.spines["bottom"].set_visible(False)
        area.axhline(0, color="black", linewidth=0.6)
        short = p.title if len(p.title) <= 40 else p.title[:39] + "…"
        area.set_title(short, fontsize=8, loc="left", pad=2)
        if i + cols >= len(panel_list):  # nothing below: label the time axis
            area.tick_params(labelbottom=True, labelsize=6)
            area.set_xlabel("time (s, trace clock)", fontsize=7, labelpad=1)
    fig.suptitle(title + "  (shares of each domain's lifetime per time bin; strip: state)",
                 fontsize=11, y=1 - 0.2 / height)
    _legend(fig, with_members=False, bottom=0.05 / height)
    return fig


def _area(ax: Any, p: Panel, compact: bool = False) -> None:
    mids = np.repeat(p.edges, 2)[1:-1]
    base = np.zeros(mids.size)
    for s in DOMAIN_ORDER:
        values = np.repeat(p.shares[int(s)] * 100, 2)
        if not values.any():
            continue
        lost = s == DomainState.LOST
        ax.fill_between(mids, base, base + values, facecolor=DOMAIN_COLORS[s], linewidth=0,
                        hatch=LOST_HATCH if lost else None,
                        edgecolor=LOST_EDGE if lost else DOMAIN_COLORS[s])
        base = base + values
    ax.set_xlim(p.edges[0], p.edges[-1])
    ax.set_ylim(0, 100)
    ax.set_yticks([0, 50, 100])
    ax.tick_params(labelbottom=False, labelsize=6 if compact else 8)
    if not compact:
        ax.set_ylabel("% of lifetime", fontsize=9)
    ax.margins(x=0)


def _strip(ax: Any, slices: Slices, colors: dict[DomainState, str], name: str | None) -> None:
    _bars(ax, slices, 0, [colors[DomainState(int(s))] for s in range(len(DomainState))],
          DomainState.LOST)
    ax.set_ylim(0, 1)
    ax.set_yticks([0.5] if name else [])
    if name:
        ax.set_yticklabels([name], fontsize=8)
    ax.tick_params(labelbottom=False, left=False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _lanes(ax: Any, lanes: tuple[tuple[str, Slices], ...]) -> None:
    colors = [MEMBER_COLORS[b] for b in MEMBER_BUCKETS]
    n = len(lanes)
    for i, (_, slices) in enumerate(lanes):
        _bars(ax, slices, n - 1 - i, colors, MEMBER_BUCKETS.index("lost"), height=0.8)
    ax.set_ylim(-0.1, n)
    ax.set_yticks([n - 1 - i + 0.4 for i in range(n)])
    ax.set_yticklabels([name for name, _ in lanes], fontsize=8)
    ax.tick_params(left=False, labelbottom=False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _bars(ax: Any, slices: Slices, y: float, colors: list[str], lost: int,
          height: float = 1.0) -> None:
    for code in np.unique(slices.state).tolist():
        pick = slices.state == code
        spans = list(zip(slices.start[pick].tolist(),
                         (slices.end[pick] - slices.start[pick]).tolist(), strict=True))
        is_lost = code == lost
        ax.broken_barh(spans, (y, height), facecolors=colors[code], linewidth=0,
                       antialiased=False, rasterized=slices.start.size > RASTER_SLICES,
                       hatch=LOST_HATCH if is_lost else None,
                       edgecolor=LOST_EDGE if is_lost else None)


def _legend(fig: Any, with_members: bool, bottom: float | None = None) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=DOMAIN_COLORS[s], label=label(s),
                     hatch=LOST_HATCH if s == DomainState.LOST else None,
                     edgecolor=LOST_EDGE if s == DomainState.LOST else DOMAIN_COLORS[s])
               for s in DOMAIN_ORDER]
    if with_members:
        handles += [Patch(facecolor=MEMBER_COLORS[b], edgecolor=MEMBER_COLORS[b],
                          label=f"member {b}") for b in ("running", "runnable", "offline")]
    if bottom is None:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7),
                   fontsize=8, frameon=False)
    else:
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, bottom),
                   ncols=min(len(handles), 7), fontsize=8, frameon=False)


def is_host(registry: Registry, key: str) -> bool:
    d = registry.find_domain(key)
    return d is not None and registry.domains[d].tags.get("kind") == HOST_IDLE
