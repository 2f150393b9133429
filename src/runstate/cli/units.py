"""Parsing of user-given durations, instants and frequencies."""

from __future__ import annotations

import re

from runstate.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)?\s*$")
_NS_PER = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
           "m": 60_000_000_000, "h": 3_600_000_000_000}
_FREQ = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmMgG])?(?:[hH][zZ])?\s*$")
_HZ_PER = {"k": 1e3, "m": 1e6, "g": 1e9}


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


def parse_frequency(text: str) -> float:
    """``2.4G``, ``2400M``, ``2400000000``, ``3GHz`` -> Hz."""
    m = _FREQ.match(text)
    if m is None:
        raise UsageError(f"not a frequency: {text!r} (examples: 2.4G, 2400M, 2400000000)")
    hz = float(m.group(1)) * _HZ_PER.get((m.group(2) or "").lower(), 1.0)
    if hz < 1:
        raise UsageError(f"frequency must be at least 1 Hz: {text!r}")
    return hz
