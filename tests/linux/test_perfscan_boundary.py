"""The C pass's argument checks: a plan or buffers it cannot use are a ValueError, never a bad read.

``_perfscan.Scanner`` reads the file at offsets Python computes from the
header; these are checked once when the scanner is made, and the columns it
fills are checked on every read.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from runstate.sources.base import ReadOptions
from runstate.sources.linux import _perfscan
from runstate.sources.linux.perfdata import PerfDataSource
from runstate.sources.linux.perfdata_order import COLUMNS
from tests.conftest import DATA

PINNED = DATA / "linux" / "pinned2.perf.data"
GOOD_LAYOUT = (24, 40, 0, 56, 0, 24, 16, 1)
ABSENT = (-1, 0, 0)
SWITCH = (372, 0, 64, 0, (24, 4, 1), (56, 4, 1), (32, 8, 1), (4, 4, 1), (8, 16), (40, 16))


def scanner(layout=GOOD_LAYOUT, kinds=(SWITCH,)):
    fd = os.open(PINNED, os.O_RDONLY)
    try:
        return _perfscan.Scanner(fd, 1064, 197584, layout, kinds, np.zeros(0, np.int64),
                                 (0, 0, 2))
    finally:
        os.close(fd)


@pytest.mark.parametrize("layout", [
    (24, 40, 0, 30, 0, 24, 16, 1),     # time field past the fixed part
    (24, 40, 60, 56, 0, 24, 16, 1),    # sample id past it
    (-1, 40, 0, 56, 0, 24, 16, 1),     # no time
    (24, 40, 0, 56, 0, 24, 1 << 20, 1),  # trailer larger than any record
], ids=["time", "id", "no-time", "trailer"])
def test_a_layout_outside_the_sample_is_refused(layout):
    with pytest.raises(ValueError, match="layout"):
        scanner(layout=layout)


@pytest.mark.parametrize("kind", [
    (372, 0, 32, 0, (24, 4, 1), (56, 4, 1), ABSENT, ABSENT, (-1, 0), (-1, 0)),  # past need
    (372, 0, 64, 0, (24, 3, 1), ABSENT, ABSENT, ABSENT, (-1, 0), (-1, 0)),  # 3-byte field
    (372, 0, 64, 0, ABSENT, ABSENT, ABSENT, ABSENT, (8, 100), (-1, 0)),  # comm too long
], ids=["past-need", "odd-size", "long-comm"])
def test_a_field_the_scanner_cannot_read_is_refused(kind):
    with pytest.raises(ValueError, match="field|data"):
        scanner(kinds=(kind,))


def columns(n: int) -> list[np.ndarray]:
    return [np.empty(n, dtype) for dtype in COLUMNS]


@pytest.mark.parametrize("case", ["dtype", "length", "count"])
def test_read_refuses_columns_it_cannot_fill(case):
    cols = columns(16)
    if case == "dtype":
        cols[0] = np.empty(16, np.float64)
    elif case == "length":
        cols[3] = np.empty(8, np.int32)
    else:
        cols = cols[:6]
    with pytest.raises(ValueError):
        scanner().read(tuple(cols), 100)


def test_columns_too_short_are_filled_in_turns_without_loss():
    """Reading into 7-row columns gives, in turn, exactly the stream one large read gives."""
    source = PerfDataSource(str(PINNED), ReadOptions())
    plan = source._records
    whole, parts = [], []
    for size, out in ((1 << 20, whole), (7, parts)):
        fd = os.open(PINNED, os.O_RDONLY)
        try:
            scan = plan.scanner(fd)
            while True:
                cols = columns(size)
                n, why = scan.read(tuple(cols), 1 << 30)
                out.append(np.stack([c[:n].astype(np.int64) for c in cols]))
                if why == _perfscan.STOP_END:
                    break
                assert why in (_perfscan.STOP_FULL, _perfscan.STOP_LOSS, _perfscan.STOP_CHUNK)
        finally:
            os.close(fd)
    a, b = np.concatenate(whole, axis=1), np.concatenate(parts, axis=1)
    assert a.shape[1] > 1000
    assert np.array_equal(a, b)


def test_a_scanner_reads_on_after_its_caller_closed_the_file():
    """The scanner holds its own descriptor."""
    fd = os.open(PINNED, os.O_RDONLY)
    scan = PerfDataSource(str(PINNED), ReadOptions())._records.scanner(fd)
    os.close(fd)
    cols = columns(1 << 16)
    n, why = scan.read(tuple(cols), 1 << 30)
    assert why == _perfscan.STOP_END and n > 1000
    assert np.all(np.diff(cols[0][:n]) >= 0)  # time-ordered


def test_a_scanner_is_made_once_and_only_by_its_init():
    bare = _perfscan.Scanner.__new__(_perfscan.Scanner)
    with pytest.raises(RuntimeError, match="not initialized"):
        bare.read(tuple(columns(4)), 1)
    made = scanner()
    with pytest.raises(RuntimeError, match="once"):
        made.__init__(0, 1064, 197584, GOOD_LAYOUT, (SWITCH,), np.zeros(0, np.int64), (0, 0, 2))
