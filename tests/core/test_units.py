"""Durations, instants, frequencies as users type them."""

from __future__ import annotations

import pytest

from runstate.cli.units import parse_duration_ns, parse_frequency
from runstate.errors import UsageError


@pytest.mark.parametrize(("text", "ns"), [
    ("1s", 1_000_000_000), ("100ms", 100_000_000), ("250us", 250_000), ("5ns", 5),
    ("1.5", 1_500_000_000), ("2min", 120_000_000_000), ("0.5ms", 500_000),
    ("1h", 3_600_000_000_000), ("3µs", 3_000),
])
def test_durations(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "fast", "-1s", "0s", "1 parsec", "5d"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration_ns(text)


def test_bare_m_is_refused_with_both_readings():
    with pytest.raises(UsageError) as caught:
        parse_duration_ns("1m")
    assert "1min" in str(caught.value) and "1ms" in str(caught.value)


def test_cli_refuses_ambiguous_interval(run_cli):
    from tests.conftest import DATA

    result = run_cli("report", str(DATA / "core" / "two_vms.csv"), "--interval", "1m")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "1min" in result.err and "1ms" in result.err


def test_help_documents_the_units(run_cli):
    for command in (("report", "--help"), ("record", "--help")):
        out = " ".join(run_cli(*command).out.split())  # argparse wraps the help text
        assert "min" in out and "ms" in out and "bare number is seconds" in out


@pytest.mark.parametrize(("text", "hz"), [
    ("2.4G", 2.4e9), ("2400M", 2.4e9), ("2400000000", 2.4e9), ("3GHz", 3e9), ("1K", 1e3),
])
def test_frequencies(text, hz):
    assert parse_frequency(text) == pytest.approx(hz)
