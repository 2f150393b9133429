"""``--cpu-hz`` parsing and the CSV -> xentrace conversion."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstate.analysis.pipeline import analyze
from runstate.errors import InputError, UsageError
from runstate.sources.base import ReadOptions
from runstate.sources.generic import CSV_READER
from runstate.sources.xentrace.constants import parse_frequency
from runstate.sources.xentrace.convert import csv_to_xentrace
from runstate.sources.xentrace.reader import XentraceSource
from tests.xen.helpers import cycles


@pytest.mark.parametrize(("text", "hz"), [
    ("2.4G", 2_400_000_000), ("2400M", 2_400_000_000), ("2400000000", 2_400_000_000),
    ("1K", 1000), ("2.1G", 2_100_000_000), ("1234567891", 1_234_567_891), ("3ghz", 3e9),
    ("1", 1), ("0.5", 0.5),
])
def test_parse_frequency(text: str, hz: float) -> None:
    assert parse_frequency(text) == hz


@pytest.mark.parametrize("text", ["", "G", "2.4X", "-1G", "0", "fast"])
def test_parse_frequency_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_frequency(text)


CSV = """time_ns,domain,member,old_state,new_state
100,1,0,runnable,running
150,1,1,blocked,runnable
200,,,running,lost
300,,,lost,running
400,1,0,running,blocked
450,32767,0,runnable,running
500,1,1,runnable,running
900,2,0,offline,runnable
"""


def test_convert_round_trip_equals_csv(tmp_path: Path) -> None:
    """At 1 GHz cycles are ns, so the converted trace must give the CSV's figures."""
    src = tmp_path / "e.csv"
    src.write_text(CSV)
    out = tmp_path / "e.trace"
    stats = csv_to_xentrace(str(src), str(out), 1e9)
    assert stats.records == 7  # 6 changes and one lost record
    from_csv = analyze(CSV_READER.open(str(src), None, ReadOptions()))
    from_trace = analyze(XentraceSource(str(out), None, ReadOptions(cpu_hz=1e9)))
    assert cycles(from_trace) == cycles(from_csv)


def test_convert_rejects_non_numeric_ids(tmp_path: Path) -> None:
    src = tmp_path / "e.csv"
    src.write_text("time_ns,domain,member,old_state,new_state\n1,vm-a,0,runnable,running\n")
    with pytest.raises(InputError) as info:
        csv_to_xentrace(str(src), str(tmp_path / "o.trace"), 1e9)
    assert "numeric" in str(info.value)
