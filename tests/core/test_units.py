"""Durations, instants, frequencies as users type them."""

from __future__ import annotations

import pytest

from runstate.cli.units import parse_duration_ns, parse_frequency
from runstate.errors import UsageError


@pytest.mark.parametrize(("text", "ns"), [
    ("1s", 1_000_000_000), ("100ms", 100_000_000), ("250us", 250_000), ("5ns", 5),
    ("1.5", 1_500_000_000), ("2m", 120_000_000_000), ("0.5ms", 500_000),
])
def test_durations(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "fast", "-1s", "0s", "1 parsec"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration_ns(text)


@pytest.mark.parametrize(("text", "hz"), [
    ("2.4G", 2.4e9), ("2400M", 2.4e9), ("2400000000", 2.4e9), ("3GHz", 3e9), ("1K", 1e3),
])
def test_frequencies(text, hz):
    assert parse_frequency(text) == pytest.approx(hz)
