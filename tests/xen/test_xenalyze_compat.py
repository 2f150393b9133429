"""``--semantics xenalyze`` against real xenalyze output on the Xen vectors (tests/data/xen)."""

from __future__ import annotations

import io
import json
import re

import pytest

from runstate.analysis.xenalyze import LABELS, run_xenalyze
from runstate.errors import InputError
from runstate.report.xenalyze_text import render_xenalyze, self_weighted_percentile
from runstate.sources.base import ReadOptions
from tests.xen import xenalyze_reference as reference
from tests.xen.helpers import XEN_DATA

CASES = ["c01_basic", "c02_init_and_end", "c04_lost_small", "c07_offline", "c08_cpu_hz_3ghz",
         "c10_big"]
_NAME = dict(LABELS)
_LINE = re.compile(r"^  \s*([a-z_ ]+): +(\d+) +([\d.]+)s +(\d+)")


def parse_xenalyze(text: str) -> tuple[str, dict[int, list[tuple[str, int, str, int]]]]:
    """Total-time line and, per domain, its runstate lines (label, count, seconds, avg)."""
    total = text.splitlines()[0]
    out: dict[int, list[tuple[str, int, str, int]]] = {}
    dom = None
    for line in text.splitlines():
        m = re.match(r"^\|-- Domain (\d+) --\|$", line)
        if m:
            dom = int(m.group(1))
            out[dom] = []
            continue
        if line.startswith(" Grant table ops:") or line.startswith("-- v"):
            dom = None
        m = _LINE.match(line)
        if m and dom is not None:
            out[dom].append((m.group(1), int(m.group(2)), m.group(3), int(m.group(4))))
    return total, out


@pytest.mark.parametrize("case", CASES)
def test_cycles_and_counts_equal_xenalyze_exact_output(case: str) -> None:
    total, want = parse_xenalyze((XEN_DATA / f"{case}.xenalyze-exact.txt").read_text())
    result = run_xenalyze(str(XEN_DATA / f"{case}.trace"), None, ReadOptions(cpu_hz=1))
    got_total, got = parse_xenalyze(render_xenalyze(result))
    assert got_total == total
    assert got == want


@pytest.mark.parametrize("case", CASES)
def test_python_reference_equals_xenalyze_exact_output(case: str) -> None:
    """The slow reference the C emulation is compared with on random traces agrees with
    real xenalyze on these files (with --cpu-hz=1 its seconds column is cycles)."""
    _, want = parse_xenalyze((XEN_DATA / f"{case}.xenalyze-exact.txt").read_text())
    result = reference.run_xenalyze(str(XEN_DATA / f"{case}.trace"), None,
                                    ReadOptions(cpu_hz=1))
    names = dict(reference.LABELS)
    got = {d.dom: {s: (st.count, st.cycles) for s, st in d.states.items()}
           for d in result.domains}
    assert got == {dom: {names[label]: (count, round(float(seconds)))
                         for label, count, seconds, _ in lines}
                   for dom, lines in want.items()}


@pytest.mark.parametrize("case", CASES)
def test_text_equals_xenalyze_output_at_its_frequency(case: str) -> None:
    ref = json.loads((XEN_DATA / f"{case}.reference.json").read_text())
    text = (XEN_DATA / f"{case}.xenalyze.txt").read_text()
    result = run_xenalyze(str(XEN_DATA / f"{case}.trace"), None,
                          ReadOptions(cpu_hz=ref["xenalyze_emulation"]["cpu_hz"]))
    assert parse_xenalyze(render_xenalyze(result)) == parse_xenalyze(text)
    mine = {str(d.dom): {k: (v.cycles, v.count) for k, v in d.states.items()}
            for d in result.domains if d.states}
    theirs = {dom: {k: (v["cycles"], v["count"]) for k, v in states.items()}
              for dom, states in ref["xenalyze_emulation"]["domains"].items() if states}
    assert mine == theirs
    assert result.total_cycles == ref["xenalyze_emulation"]["total_cycles"]


def test_stream_input_gives_the_same() -> None:
    path = XEN_DATA / "c04_lost_small.trace"
    a = run_xenalyze(str(path), None, ReadOptions(cpu_hz=1))
    b = run_xenalyze("-", io.BytesIO(path.read_bytes()), ReadOptions(cpu_hz=1))
    assert render_xenalyze(a) == render_xenalyze(b)


def test_first_record_running_on_busy_pcpu_is_fatal(tmp_path) -> None:
    from runstate.sources.xentrace.writer import XentraceWriter

    path = tmp_path / "bad.trace"
    with open(path, "wb") as f:
        w = XentraceWriter(f)
        w.runstate_change(0, 1000, 1, 0, 1, 0)   # d1v0 starts running on pcpu 0
        w.runstate_change(0, 2000, 2, 0, 0, 1)   # d2v0 (init) says it was running there
        w.close()
    with pytest.raises(InputError) as info:
        run_xenalyze(str(path), None, ReadOptions(cpu_hz=1))
    assert "byte offset 28" in str(info.value)


def test_self_weighted_percentile() -> None:
    import numpy as np

    values = np.array([1, 1, 1, 97], np.int64)
    assert self_weighted_percentile(values, 0.5) == 97
    assert self_weighted_percentile(values, 0.02) == 1
    assert _NAME["full run"] == "full_run"
