"""The ``--format xenalyze`` text: xenalyze's summary layout, domain runstates only.

Lines are printed exactly as ``xenalyze -s`` prints them (``Total time``,
``|-- Domain N --|``, `` Runstates:`` and one line per state with count > 0,
in xenalyze's order and label spelling, format
``"  %8s: %7d %5.2lfs %6lld {%6lld|%6lld|%6lld}"``), so the output can be
diffed against xenalyze's.  The other per-domain sections (grant tables,
populate-on-demand, per-vCPU lines) are not printed.

The braces hold the 5th, 50th and 95th self-weighted percentiles of the
interval lengths (each interval weighted by its own length), computed from a
bounded histogram: each printed value is an interval length that occurred, at
least the exact percentile (the smallest length at which the cumulative
weight reaches the fraction, :func:`self_weighted_percentile`) and less than
1/64 above it; lengths below 128 cycles are exact
(``runstate.analysis.xenalyze`` documents the histogram).  xenalyze computes
these with a sampling quickselect whose results differ from any standard
definition, so these three numbers can differ from xenalyze's; the count,
seconds and average columns match.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runstate.analysis.xenalyze import LABELS, XenalyzeResult

_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "K"))


def _speed(hz: float) -> str:
    for scale, prefix in _PREFIXES:
        if hz >= scale:
            return f"{hz / scale:.2f} {prefix}Hz"
    return f"{hz:.2f}  Hz"


def self_weighted_percentile(values: npt.NDArray[np.int64], fraction: float) -> int:
    """Smallest value at which the values' own cumulative weight reaches ``fraction``."""
    if values.shape[0] == 0:
        return 0
    ordered = np.sort(values)
    cumulative = np.cumsum(ordered, dtype=np.float64)
    target = fraction * cumulative[-1]
    return int(ordered[min(int(np.searchsorted(cumulative, target)), ordered.shape[0] - 1)])


def render_xenalyze(result: XenalyzeResult) -> str:
    """The xenalyze-style summary of domain runstates (see module docstring)."""
    hz = result.cpu_hz
    lines = [f"Total time: {result.total_cycles / hz:.2f} seconds "
             f"(using cpu speed {_speed(hz)})"]
    for dom in result.domains:
        lines.append(f"|-- Domain {dom.dom} --|")
        lines.append(" Runstates:")
        for label, name in LABELS:
            st = dom.states.get(name)
            if st is None or st.count == 0:
                continue
            p5, p50, p95 = st.percentiles
            avg = st.cycles // st.count
            lines.append(f"  {label:>8s}: {st.count:7d} {st.cycles / hz:5.2f}s {avg:6d} "
                         f"{{{p5:6d}|{p50:6d}|{p95:6d}}}")
    return "\n".join(lines) + "\n"


def xenalyze_to_dict(result: XenalyzeResult) -> dict[str, object]:
    """The same figures as JSON (schema ``runstate.xenalyze/1``): cycles and counts per state."""
    return {
        "schema": "runstate.xenalyze/1",
        "semantics": "xenalyze",
        "cpu_hz": result.cpu_hz,
        "cpu_hz_assumed": result.cpu_hz_assumed,
        "total_cycles": result.total_cycles,
        "domains": [
            {"domain": str(d.dom),
             "states": {name: {"cycles": s.cycles, "count": s.count,
                               "seconds": s.cycles / result.cpu_hz}
                        for name, s in d.states.items()}}
            for d in result.domains
        ],
        "notes": list(result.notes),
    }
