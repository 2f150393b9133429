"""Damage counted while reading a perf.data file reaches the report, whichever pass saw it.

The reader walks the file once to learn names and keeps the decoded events for
the analysis when they fit; the analysis then does not walk the file again, so
what the walk counted (a record cut off at the end of a killed writer's file,
samples too short to hold their fields) must be carried over, not lost.
"""

from __future__ import annotations

import struct
from pathlib import Path

from runstate.analysis.pipeline import analyze
from runstate.sources.base import ReadOptions
from runstate.sources.linux.perfdata import PerfDataSource

from .perfdata_writer import PerfDataWriter

WRITER = PerfDataWriter()
#: header fields: data size at byte 48, the feature bitmap at 72..104
DATA_SIZE_AT, FEATURES = 48, slice(72, 104)


def _records() -> list[bytes]:
    """Two CPUs switching between two tasks for a while, in rounds."""
    out = []
    t = 1_000_000
    for step in range(40):
        for cpu in (0, 1):
            a, b = (100 + cpu, 200 + cpu) if step % 2 else (200 + cpu, 100 + cpu)
            out.append(WRITER.sample(0, t, cpu, a, b, prev_state=1, actor=a))
            t += 1000
        out.append(WRITER.finished_round())
    return out


def _killed_writer_file(path: Path, records: list[bytes], tail_cut: int) -> None:
    """What perf leaves when it is killed: data size 0, no features, a partial last record."""
    blob = bytearray(WRITER.file(records))
    data_offset = struct.unpack_from("<Q", blob, 40)[0]
    data_size = struct.unpack_from("<Q", blob, DATA_SIZE_AT)[0]
    struct.pack_into("<Q", blob, DATA_SIZE_AT, 0)
    blob[FEATURES] = bytes(32)
    path.write_bytes(bytes(blob[:data_offset + data_size - tail_cut]))


def test_a_killed_writers_partial_record_is_counted_in_the_result(tmp_path: Path) -> None:
    records = _records()
    last = records[-2]  # the last sample (the round marker follows it)
    cut = len(last) - 10  # keep 10 bytes of it: a record cut off mid-way
    path = tmp_path / "killed.data"
    _killed_writer_file(path, records[:-1], cut)
    source = PerfDataSource(str(path), ReadOptions())
    result = analyze(source)
    assert source.info.anomalies.get("truncated_tail_bytes") == 10
    assert result.anomalies.get("truncated_tail_bytes") == 10
