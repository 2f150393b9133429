"""Small helpers shared by the Linux reader tests."""

from __future__ import annotations

import re
from pathlib import Path

from runstate.analysis.pipeline import analyze
from runstate.engine.results import RunResult
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source


def run(path: Path | str, group: str | None = None, fmt: str | None = None,
        strict: bool = False) -> tuple[RunResult, object]:
    src = open_source(str(path), ReadOptions(group=group, strict=strict), fmt)
    return analyze(src), src


def domain(result: RunResult, name: str):
    matches = [d for d in result.domains if d.name == name]
    assert len(matches) == 1, [d.name for d in result.domains]
    return matches[0]


def timehist_runtime_ms(path: Path) -> dict[int, float]:
    """tid -> run-time (ms) from a ``perf sched timehist -s`` summary."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*\S.*\[(\d+)(?:/\d+)?\]\s+-?\d+\s+\d+\s+([\d.]+)\s", line)
        if m:
            out[int(m.group(1))] = float(m.group(2))
    return out
