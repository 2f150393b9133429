"""Parsing of user-given durations and instants (frequencies: ``parse_frequency``)."""

from __future__ import annotations

import re

from runstate.errors import UsageError
from runstate.sources.xentrace.constants import parse_frequency

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)?\s*$")
_NS_PER = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
           "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration_ns(text: str) -> int:
    """``1s``, ``100ms``, ``250us``, ``500ns``, ``2m``; a bare number is seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise UsageError(f"not a duration: {text!r} (examples: 1s, 100ms, 250us)")
    ns = round(float(m.group(1)) * _NS_PER[m.group(2) or "s"])
    if ns <= 0:
        raise UsageError(f"duration must be positive: {text!r}")
    return ns


def parse_seconds(text: str) -> float:
    """A point in the trace's clock, in seconds (as perf script / xenalyze print it)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"not a time in seconds: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"not a time in seconds: {text!r}")
    return value


__all__ = ["parse_duration_ns", "parse_frequency", "parse_seconds"]
