"""Tick -> ns conversion keeps conservation exact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runstate.report.model import Clock


@settings(deadline=None)  # pure arithmetic; a busy machine must not fail it
@given(st.lists(st.integers(0, 10**15), min_size=1, max_size=7),
       st.integers(1_000_000, 5_000_000_000))
def test_apportioned_parts_add_up_to_the_converted_whole(parts, hz):
    clock = Clock(hz)
    ns = clock.apportion(parts)
    assert sum(ns) == clock.ns(sum(parts))
    for tick, value in zip(parts, ns, strict=True):
        assert abs(value - tick * 1e9 / hz) <= 1.0 + 1e-6 * value


def test_ns_clock_is_identity():
    assert Clock(None).apportion([3, 5]) == [3, 5]
