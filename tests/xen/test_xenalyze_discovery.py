"""Regression tests: three differences from the real xenalyze, found on random traces.

Each trace is built by hand, window by window, and its expected figures are
worked out by hand from xenalyze's rules as docs/xentrace.md describes them
("xenalyze-compatible mode"; in the comments).  Both the C emulation and the
Python reference must give them.

1. A lost record's payload vCPU is looked up only when the record is processed
   the second time (LOST_END).  At LOST_START (its first_tsc) that vCPU and
   its domain may not exist yet, and then they are not set to "lost" there.
2. A pcpu activated late in the file processes its own window header at once;
   if it is then the highest active pcpu, it peeks at the window after that
   one, like any highest pcpu reaching its next window.  The pcpus
   found by the scan at offset 0 do not peek during that scan.
3. A cursor passes other pcpus' windows one header at a time, in the merge,
   with the order key of its pcpu's last record.  A pcpu it activates on the
   way processes its records older than that key before the cursor passes
   the next window (and possibly activates another pcpu there).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from runstate.analysis.xenalyze import run_xenalyze
from runstate.sources.base import ReadOptions
from runstate.sources.xentrace.writer import XentraceWriter
from tests.xen import xenalyze_reference as reference

RUNNING, RUNNABLE, BLOCKED = 0, 1, 2
IDLE = 32767
T = 1_000_000  # TSC base (a TSC of 0 means "unset" to xenalyze)

Figures = dict[int, dict[str, tuple[int, int]]]


def _trace(build: Callable[[XentraceWriter], None]) -> bytes:
    out = io.BytesIO()
    build(XentraceWriter(out))
    return out.getvalue()


def _figures(path: Path) -> tuple[Figures, Figures]:
    """{dom: {state: (count, cycles)}} from the C emulation and from the reference."""
    opts = ReadOptions(cpu_hz=1)
    got = run_xenalyze(str(path), None, opts)
    want = reference.run_xenalyze(str(path), None, opts)
    return ({d.dom: {n: (s.count, s.cycles) for n, s in d.states.items()} for d in got.domains},
            {d.dom: {n: (s.count, s.cycles) for n, s in d.states.items()} for d in want.domains})


def _check(tmp_path: Path, data: bytes, expected: Figures) -> None:
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    got, want = _figures(path)
    assert want == expected
    assert got == expected


# ---- 1. the lost record's vCPU exists only from LOST_END ----------------------------


def test_lost_record_vcpu_is_created_at_lost_end(tmp_path: Path) -> None:
    def build(w: XentraceWriter) -> None:
        # pcpu 0 drops records from T+100 on; the lost record (written at
        # T+1000) names d1v0, the vCPU running there when it is written
        w.lost_records(0, T + 1000, count=3, dom=1, vcpu=0, first_tsc=T + 100)
        w.runstate_change(0, T + 1500, 1, 0, RUNNING, BLOCKED)
        w.runstate_change(0, T + 1504, IDLE, 0, RUNNABLE, RUNNING)
        w.flush(0)

    # LOST_START at T+100: pcpu 0's placeholder becomes lost; no vCPU of a real
    # domain exists yet, so nothing else happens (formerly d1v0 was created here
    # and set lost, so domain 1 started "lost" at T+100).
    # LOST_END at T+1000: d1v0 is created and runs: domain 1's first update.
    # T+1500: d1v0 running -> blocked (no pcpu inside a lost interval any more):
    #   domain 1 charges T+1000..T+1500 to full run.
    # T+1504: the idle vCPU starts: domain 32767's first update; at the end of
    #   pcpu 0 it becomes lost at the same TSC: no interval.
    _check(tmp_path, _trace(build), {1: {"full_run": (1, 500)}, IDLE: {}})


# ---- 2. a late-activated highest pcpu peeks at the next window ----------------------


def _two_vcpus(w: XentraceWriter, first: int, second: int) -> None:
    """Domain 1: v0 runs T+20..T+60 on pcpu ``first``, v1 T+40..T+80 on ``second``."""
    w.runstate_change(first, T + 20, 1, 0, RUNNABLE, RUNNING)
    w.runstate_change(first, T + 60, 1, 0, RUNNING, BLOCKED)
    w.flush(first)
    w.runstate_change(second, T + 40, 1, 1, RUNNABLE, RUNNING)
    w.runstate_change(second, T + 80, 1, 1, RUNNING, BLOCKED)
    w.flush(second)


#: domain 1 when the records are merged in TSC order: T+20 v0 runs (full run);
#: T+40 v1 runs (+20 full run); T+60 v0 blocks (+20 full run, now partial
#: run); T+80 v1 blocks (+20 partial run).  If pcpu 2 were activated only
#: after pcpu 1's last record, the order would be T+20, T+60, T+40, T+80: the
#: domain would go back in time at T+40 and get full run (1, 40), partial run
#: (1, 40) instead.
DOM1_IN_ORDER = {"partial_run": (1, 20), "full_run": (2, 40)}


def test_late_activated_highest_pcpu_peeks_at_the_next_window(tmp_path: Path) -> None:
    def build(w: XentraceWriter) -> None:
        w.continue_running(0, T + 10, IDLE, 0)
        w.flush(0)
        w.continue_running(0, T + 100, IDLE, 0)
        w.flush(0)
        _two_vcpus(w, 1, 2)

    # Windows: p0, p0, p1, p2.  The scan at offset 0 stops at pcpu 0's second
    # window.  After T+10, pcpu 0 (the highest active pcpu) reaches that window
    # and peeks at the next one: pcpu 1 is activated.  Pcpu 1 then processes
    # its header as the highest active pcpu and peeks in turn: pcpu 2 is
    # activated before any record of pcpu 1 is processed.
    # Domain 32767: d32767v0 continues at T+10 (pcpu 0's first record, so it
    # runs from T+10) and at T+100: full run T+10..T+100.
    _check(tmp_path, _trace(build), {1: DOM1_IN_ORDER, IDLE: {"full_run": (1, 90)}})


def test_pcpus_found_at_offset_zero_do_not_peek_during_the_scan(tmp_path: Path) -> None:
    def build(w: XentraceWriter) -> None:
        w.runstate_change(1, T + 20, 1, 0, RUNNABLE, RUNNING)
        w.runstate_change(1, T + 60, 1, 0, RUNNING, BLOCKED)
        w.flush(1)
        w.continue_running(0, T + 100, IDLE, 0)
        w.flush(0)
        w.runstate_change(2, T + 40, 1, 1, RUNNABLE, RUNNING)
        w.runstate_change(2, T + 80, 1, 1, RUNNING, BLOCKED)
        w.flush(2)
        w.continue_running(0, T + 110, IDLE, 0)
        w.flush(0)

    # Windows: p1, p0, p2, p0.  The scan at offset 0 activates pcpus 1, 0 and
    # 2 and stops at pcpu 0's second window; only then are the headers
    # processed.  (Had pcpu 1 peeked when it was activated, pcpu 0 would
    # already be active at the second step, the scan would stop there, and
    # pcpu 2 would be found only when pcpu 1 passes its window after T+60.)
    # Domain 32767: d32767v0 continues at T+100 (pcpu 0's first record, so it
    # runs from T+100) and at T+110: full run T+100..T+110.
    _check(tmp_path, _trace(build), {1: DOM1_IN_ORDER, IDLE: {"full_run": (1, 10)}})


# ---- 3. window headers are passed one at a time, in merge order --------------------


def test_pcpu_found_by_a_passing_cursor_runs_before_the_next_header(tmp_path: Path) -> None:
    def build(w: XentraceWriter) -> None:
        w.continue_running(0, T + 10, IDLE, 0)
        w.flush(0)
        w.continue_running(3, T + 500, IDLE, 3)
        w.flush(3)
        w.continue_running(0, T + 100, IDLE, 0)
        w.flush(0)
        _two_vcpus(w, 1, 2)
        w.continue_running(0, T + 110, IDLE, 0)
        w.flush(0)

    # Windows: p0, p3, p0, p1, p2, p0.  The scan at offset 0 finds pcpus 0 and
    # 3 (the highest; its peek finds pcpu 0's second window).  Pcpu 0 passes
    # pcpu 1's window right after its record at T+100, activating pcpu 1, whose
    # records at T+20 and T+60 are older than T+100 and so are processed before
    # anything else; only after T+60 is pcpu 2's window passed (by pcpu 1) and
    # pcpu 2 activated.  Domain 1 thus sees T+20, T+60, T+40, T+80: T+20 v0
    # runs (full run); T+60 v0 blocks (+40 full run; v1 is still init, so the
    # domain is blocked); T+40 v1 runs (T+40 < T+60: nothing charged, the
    # domain's last update moves back to T+40, partial run); T+80 v1 blocks
    # (+40 partial run).  (Passing both windows at once would merge pcpus 1
    # and 2 in TSC order and give DOM1_IN_ORDER.)
    # Domain 32767: d32767v0 runs from T+10 (continue, pcpu 0's first record),
    # +90 full run at T+100, +10 at T+110, then pcpu 0's data ends: lost at
    # T+110.  d32767v3 continues at T+500, pcpu 3's first record: +390 lost,
    # and lost again at the end of pcpu 3, at the same TSC.
    _check(tmp_path, _trace(build), {
        1: {"partial_run": (1, 40), "full_run": (1, 40)},
        IDLE: {"full_run": (2, 100), "lost": (1, 390)},
    })
