"""Parsing of user-given durations and instants (frequencies: ``parse_frequency``).

Durations take a unit: ``ns``, ``us`` (or ``µs``), ``ms``, ``s``, ``min``, ``h``;
a bare number is seconds.  ``m`` alone is refused: it reads as minutes to some
and as milliseconds to others, and a wrong guess is off by 60 000.
"""

from __future__ import annotations

import re

from runstate.errors import UsageError

#: the units a duration accepts, and their length in ns
NS_PER_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
               "min": 60_000_000_000, "h": 3_600_000_000_000}
#: how durations are described in --help texts
DURATION_HELP = "a number with a unit: ns, us, ms, s, min, h (a bare number is seconds)"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([^\d\s.]*)\s*$")


def parse_duration_ns(text: str) -> int:
    """``1s``, ``100ms``, ``250us``, ``500ns``, ``2min``, ``1h``; a bare number is seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise UsageError(f"not a duration: {text!r} (examples: 1s, 100ms, 250us, 2min)")
    unit = m.group(2) or "s"
    if unit == "m":
        raise UsageError(f"ambiguous duration {text!r}: write {m.group(1)}min for minutes "
                         f"or {m.group(1)}ms for milliseconds")
    if unit not in NS_PER_UNIT:
        raise UsageError(f"unknown unit {unit!r} in duration {text!r} "
                         "(units: ns, us, ms, s, min, h)")
    ns = round(float(m.group(1)) * NS_PER_UNIT[unit])
    if ns <= 0:
        raise UsageError(f"duration must be positive: {text!r}")
    return ns


def parse_frequency(text: str) -> float:
    """A TSC frequency such as ``2.4G`` or ``2400M``, in Hz.  The rules are the Xen
    reader's; they load only when a frequency is given, so reading another format
    never imports the Xen modules."""
    from runstate.sources.xentrace.constants import parse_frequency as parse

    return parse(text)


def parse_seconds(text: str) -> float:
    """A point in the trace's clock, in seconds (as perf script / xenalyze print it)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"not a time in seconds: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"not a time in seconds: {text!r}")
    return value


__all__ = ["DURATION_HELP", "parse_duration_ns", "parse_frequency", "parse_seconds"]
