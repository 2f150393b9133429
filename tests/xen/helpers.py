"""Shared helpers for the Xen tests: writing scenarios, running the exact pipeline."""

from __future__ import annotations

import io
from pathlib import Path

from runstate.analysis.pipeline import analyze
from runstate.engine.results import RunResult
from runstate.model.states import DomainState
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.reader import XentraceSource
from runstate.sources.xentrace.synth import Scenario, write

XEN_DATA = Path(__file__).parents[1] / "data" / "xen"


def trace_bytes(sc: Scenario, **kw: int | bool) -> bytes:
    out = io.BytesIO()
    write(sc, out, **kw)
    return out.getvalue()


def run_exact(path: str, cpu_hz: float | None = 2.4e9, **opts: object) -> RunResult:
    return analyze(XentraceSource(path, None, ReadOptions(cpu_hz=cpu_hz, **opts)))  # type: ignore[arg-type]


def cycles(result: RunResult) -> dict[str, dict[DomainState, int]]:
    """Non-zero cycles per domain key and state."""
    return {d.key: {s: st.ticks for s, st in d.states.items() if st.ticks}
            for d in result.domains if any(st.ticks for st in d.states.values())}
