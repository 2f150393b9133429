"""The C kernels refuse a caller's mistakes with ValueError instead of touching
memory they do not own; the constants they share with Python agree; stale
builds are refused; real ids never collide with sentinels.

Run under the sanitizer build too (scripts/sanitize.sh): a check that is
missing shows there as an AddressSanitizer report instead of a pass.
"""

from __future__ import annotations

import importlib
import io
import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runstate._abi import ABI_VERSION, StaleKernelError, check_constants, check_kernel
from runstate.analysis import _xenalyze
from runstate.cli.main import main
from runstate.engine import _kernel
from runstate.model.states import LOSS_BEGIN, LOSS_END, DomainState, MemberState
from runstate.sources.linux import _pagewalk, _perfwalk
from runstate.sources.xentrace import _walk
from runstate.sources.xentrace.writer import XentraceWriter

SRC = Path(__file__).resolve().parents[1] / "src"
N_BUCKETS = _kernel.N_BUCKETS


def _extension_modules() -> list[str]:
    return sorted(".".join(p.relative_to(SRC).with_suffix("").parts)
                  for p in SRC.glob("runstate/**/_*.c"))


# ---- ABI and shared constants ------------------------------------------------

@pytest.mark.parametrize("name", _extension_modules())
def test_every_kernel_reports_the_abi_this_code_expects(name):
    module = importlib.import_module(name)
    assert module.ABI_VERSION == ABI_VERSION
    check_kernel(module)


def test_a_stale_kernel_is_refused_with_instructions():
    stale = types.ModuleType("runstate.engine._kernel")
    stale.ABI_VERSION = ABI_VERSION - 1  # type: ignore[attr-defined]
    with pytest.raises(StaleKernelError, match="rebuild.*build_ext --inplace"):
        check_kernel(stale)
    with pytest.raises(StaleKernelError, match="RUNNING is 0 in C, 9 in Python"):
        check_constants(_kernel, {"RUNNING": 9})


def test_kernel_codes_equal_the_model_enums():
    for state in MemberState:
        assert getattr(_kernel, state.name) == state.value
    assert _kernel.D_LOST == DomainState.LOST and len(DomainState) == _kernel.N_DSTATES
    assert (_kernel.LOSS_BEGIN, _kernel.LOSS_END) == (LOSS_BEGIN, LOSS_END)
    assert (_walk.R_LOSS_BEGIN, _walk.R_LOSS_END) == (LOSS_BEGIN, LOSS_END)
    assert _xenalyze.MAX_PCPUS == _walk.MAX_PCPUS


# ---- _kernel -----------------------------------------------------------------

def _state(nm: int = 2, nd: int = 2) -> list[np.ndarray[Any, Any]]:
    return [np.zeros(nm, np.int32), np.full(nm, 6, np.int8), np.zeros(nm, np.int64),
            np.zeros((nm, 5), np.int64), np.zeros((nd, 4), np.int32), np.zeros(nd, np.int64),
            np.zeros((nd, 7), np.int64), np.full(nd, 7, np.int8), np.zeros(nd, np.int64),
            np.zeros((nd, 7), np.int64), np.zeros((nd, 7), np.int64),
            np.zeros((nd, 7, N_BUCKETS), np.uint32), np.zeros(_kernel.N_GLOBALS, np.int64)]


def _events(n: int = 3) -> list[np.ndarray[Any, Any]]:
    return [np.arange(n, dtype=np.int64) * 10, np.zeros(n, np.int32),
            np.array([4, 0, 1][:n], np.int8), np.array([0, 1, 0][:n], np.int8)]


def _feed(state: list[Any], events: list[Any], resolve: Any = None) -> None:
    _kernel.feed(tuple(state), *events, resolve)


def test_kernel_accepts_the_valid_arguments_the_others_are_derived_from():
    state = _state()
    _feed(state, _events())
    assert state[3][0].sum() == 20  # member 0: 10 ns running, 10 ns runnable
    _kernel.close_all(tuple(state), 100)


def _wrong_dtype(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    other = {1: np.int16, 2: np.int32, 4: np.int64, 8: np.int32}[a.dtype.itemsize]
    if a.dtype == np.uint32:
        other = np.int32  # same size, other signedness
    return a.astype(other)


def _non_contiguous(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    flat = np.repeat(a.reshape(-1), 2)
    return flat[::2]


def _shorter(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.ascontiguousarray(a.reshape(-1)[:-1])


def _longer(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])


_BREAKERS: dict[str, Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]] = {
    "dtype": _wrong_dtype, "non_contiguous": _non_contiguous, "shorter": _shorter,
    "longer": _longer}


@pytest.mark.parametrize("how", sorted(_BREAKERS))
@pytest.mark.parametrize("slot", range(13))
def test_kernel_refuses_a_bad_state_array(slot, how):
    state = _state()
    state[slot] = _BREAKERS[how](state[slot])
    if how == "longer" and slot in (0, 5):
        pytest.skip("mdom and dlast define the member and domain counts")
    with pytest.raises(ValueError):
        _feed(state, _events())
    with pytest.raises(ValueError):
        _kernel.close_all(tuple(state), 100)


@pytest.mark.parametrize("how", ["dtype", "non_contiguous", "shorter"])
@pytest.mark.parametrize("column", range(4))
def test_kernel_refuses_a_bad_event_column(column, how):
    events = _events()
    events[column] = _BREAKERS[how](events[column])
    with pytest.raises(ValueError):
        _feed(_state(), events)


def test_kernel_refuses_a_read_only_state_array():
    state = _state()
    state[3].flags.writeable = False
    with pytest.raises(ValueError, match="mns"):
        _feed(state, _events())


@pytest.mark.parametrize("slot,index,value", [
    (0, 1, 2), (0, 0, -1),           # mdom names a domain that does not exist
    (1, 0, 7), (1, 1, -1),           # mstate beyond the member states
    (7, 0, 8), (7, 0, -1),           # ep_state beyond the domain states
])
def test_kernel_refuses_out_of_range_codes_in_its_state(slot, index, value):
    state = _state()
    state[slot].reshape(-1)[index] = value
    with pytest.raises(ValueError):
        _feed(state, _events())


@pytest.mark.parametrize("column,index,value", [
    (1, 1, 2), (1, 1, 1 << 30), (1, 0, -2),   # member beyond the arrays, or not a marker
    (2, 1, 6), (2, 1, -1), (3, 2, 9),          # member state codes
    (0, 2, 5),                                  # time goes backwards
])
def test_kernel_refuses_bad_events(column, index, value):
    events = _events()
    events[column][index] = value
    with pytest.raises(ValueError):
        _feed(_state(), events)


def test_kernel_refuses_a_marker_with_an_unknown_code():
    events = _events()
    events[1][1] = -1
    events[3][1] = 3
    with pytest.raises(ValueError, match="invalid state code"):
        _feed(_state(), events)
    events[3][1] = LOSS_BEGIN
    _feed(_state(), events)


@pytest.mark.parametrize("table", [np.zeros(3, np.int8), np.full(4, 7, np.int8),
                                   np.full(4, -2, np.int8), np.zeros(4, np.int16)])
def test_kernel_refuses_a_bad_resolution_table(table):
    with pytest.raises(ValueError):
        _feed(_state(), _events(), table)


def test_kernel_refuses_a_state_that_is_not_a_13_tuple():
    with pytest.raises(ValueError):
        _kernel.feed(tuple(_state()[:12]), *_events(), None)
    with pytest.raises(ValueError):
        _kernel.feed(tuple([*_state()[:12], None]), *_events(), None)


# ---- xentrace walker ---------------------------------------------------------

def _decode_args(data: bytes = b"\0" * 64) -> list[Any]:
    cur = np.zeros(_walk.N_CURSOR, np.int64)
    cur[_walk.C_WEND] = -1
    cols = (np.empty(8, np.int64), np.empty(8, np.int64), np.empty(8, np.int8),
            np.empty(8, np.int8), np.empty(8, np.int8), np.empty(8, np.int64),
            np.empty(8, np.int16), np.empty(8, np.int64))
    return [data, 0, -1, cur, np.zeros(_walk.N_STATS, np.int64),
            np.full(_walk.MAX_PCPUS, -1, np.int64), cols, 0]


def test_decode_reports_a_bad_header_through_the_cursor_not_an_exception():
    args = _decode_args()
    assert _walk.decode(*args) == 0
    assert args[3][_walk.C_STATUS] == _walk.ST_ERROR


@pytest.mark.parametrize("slot", [3, 4, 5])
@pytest.mark.parametrize("how", ["dtype", "shorter", "longer", "non_contiguous"])
def test_decode_refuses_bad_cursor_stats_or_pcpu_arrays(slot, how):
    args = _decode_args()
    args[slot] = _BREAKERS[how](args[slot])
    with pytest.raises(ValueError):
        _walk.decode(*args)


@pytest.mark.parametrize("column", range(8))
@pytest.mark.parametrize("how", ["dtype", "shorter", "non_contiguous"])
def test_decode_refuses_bad_output_columns(column, how):
    args = _decode_args()
    cols = list(args[6])
    cols[column] = _BREAKERS[how](cols[column])
    args[6] = tuple(cols)
    with pytest.raises(ValueError):
        _walk.decode(*args)


@pytest.mark.parametrize("slot,value", [
    (_walk.C_OFF, -1), (_walk.C_OFF, 65), (_walk.C_OFF, 1 << 62),
    (_walk.C_PCPU, _walk.MAX_PCPUS), (_walk.C_PCPU, -5)])
def test_decode_refuses_a_cursor_outside_its_buffer_or_pcpus(slot, value):
    args = _decode_args()
    args[3][slot] = value
    if slot == _walk.C_PCPU:
        args[3][_walk.C_WEND] = 40
    with pytest.raises(ValueError):
        _walk.decode(*args)


def test_decode_refuses_a_negative_base():
    args = _decode_args()
    args[1] = -8
    args[3][_walk.C_OFF] = -8
    with pytest.raises(ValueError):
        _walk.decode(*args)


def _index_args() -> list[Any]:
    cur = np.zeros(_walk.N_CURSOR, np.int64)
    cur[_walk.C_WEND] = -1
    return [b"\0" * 64, 0, cur, np.empty(4, np.int64), np.empty(4, np.int32),
            np.empty(4, np.int64), 0]


@pytest.mark.parametrize("slot", [2, 3, 4, 5])
@pytest.mark.parametrize("how", ["dtype", "shorter", "non_contiguous"])
def test_index_refuses_bad_arrays(slot, how):
    args = _index_args()
    args[slot] = _BREAKERS[how](args[slot])
    with pytest.raises(ValueError):
        _walk.index(*args)


@pytest.mark.parametrize("off", [-4, 68, 1 << 40])
def test_index_refuses_a_cursor_outside_the_buffer(off):
    args = _index_args()
    args[2][_walk.C_OFF] = off
    with pytest.raises(ValueError):
        _walk.index(*args)


def _table(keys: dict[int, int], size: int = 8) -> tuple[Any, Any]:
    tkeys, tvals = np.full(size, -1, np.int64), np.full(size, -1, np.int32)
    for k, v in keys.items():
        h = ((k * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 20
        while tkeys[h % size] >= 0:
            h += 1
        tkeys[h % size], tvals[h % size] = k, v
    return tkeys, tvals


def test_lookup_finds_keys_and_refuses_a_table_without_an_empty_slot():
    tkeys, tvals = _table({0xFFFFFFFF: 0, 5: 1})
    out = np.empty(3, np.int32)
    assert _walk.lookup(np.array([5, 0xFFFFFFFF, 6], np.int64), out, tkeys, tvals) == 1
    assert out.tolist() == [1, 0, -2]
    full_keys = np.arange(8, dtype=np.int64)
    with pytest.raises(ValueError, match="no empty slot"):
        _walk.lookup(np.array([99], np.int64), out[:1].copy(), full_keys, tvals)


@pytest.mark.parametrize("case", ["not_pow2", "vals_short", "out_short", "keys_dtype"])
def test_lookup_refuses_bad_arrays(case):
    keys, out = np.array([5], np.int64), np.empty(1, np.int32)
    tkeys, tvals = _table({5: 0})
    if case == "not_pow2":
        tkeys, tvals = tkeys[:6].copy(), tvals[:6].copy()
    elif case == "vals_short":
        tvals = tvals[:4].copy()
    elif case == "out_short":
        out = np.empty(0, np.int32)
    else:
        keys = keys.astype(np.int32)
    with pytest.raises(ValueError):
        _walk.lookup(keys, out, tkeys, tvals)


def _emit_args(packed: list[int], n_seen: int = 2) -> list[Any]:
    n = len(packed)
    return [(np.arange(n, dtype=np.int64), np.array(packed, np.int64)),
            _table({0xFFFFFFFF: 0, (7 << 16) | 3: 1}), np.zeros(n_seen, np.uint8),
            np.array([0, -(1 << 62), 0], np.int64),
            (np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.int8),
             np.empty(n, np.int8))]


def _row(ids: int, flag: int, old: int = 0, new: int = 0) -> int:
    return ids | flag << 32 | old << 40 | new << 48


def test_emit_tells_markers_by_their_flag_so_vcpu_65535_of_domain_65535_is_a_member():
    packed = [_row(0xFFFFFFFF, 0, 1, 0), _row(0xFFFFFFFF, LOSS_BEGIN, 0, LOSS_BEGIN),
              _row((7 << 16) | 3, 0, 2, 1), _row(0xFFFFFFFF, LOSS_END, 0, LOSS_END)]
    args = _emit_args(packed)
    assert _walk.emit(*args) == 4
    assert args[4][1].tolist() == [0, -1, 1, -1]
    assert args[4][3].tolist() == [0, LOSS_BEGIN, 1, LOSS_END]


@pytest.mark.parametrize("case", ["flag", "state", "packed_short", "out_short", "state_short",
                                  "member_beyond_seen", "out_dtype"])
def test_emit_refuses_bad_rows_and_arrays(case):
    packed = [_row((7 << 16) | 3, 0, 2, 1)]
    if case == "flag":
        packed = [_row((7 << 16) | 3, 4, 2, 1)]
    elif case == "state":
        packed = [_row((7 << 16) | 3, 0, 9, 1)]
    args = _emit_args(packed, n_seen=1 if case == "member_beyond_seen" else 2)
    if case == "packed_short":
        args[0] = (args[0][0], args[0][1][:0].copy())
    elif case == "out_short":
        args[4] = (*args[4][:3], np.empty(0, np.int8))
    elif case == "state_short":
        args[3] = args[3][:2].copy()
    elif case == "out_dtype":
        args[4] = (args[4][0], args[4][1].astype(np.int64), *args[4][2:])
    with pytest.raises(ValueError):
        _walk.emit(*args)


# ---- perf.data record walker -------------------------------------------------

@pytest.mark.parametrize("case", ["pos_negative", "pos_beyond", "types_dtype",
                                  "offsets_dtype", "lengths_differ", "non_contiguous"])
def test_perfwalk_refuses_bad_arguments(case):
    buf = b"\x09\0\0\0\0\0\x08\0" * 4
    pos, offs, types_ = 0, np.empty(4, np.int64), np.empty(4, np.uint32)
    if case == "pos_negative":
        pos = -8
    elif case == "pos_beyond":
        pos = 1 << 40
    elif case == "types_dtype":
        types_ = np.empty(4, np.int64)
    elif case == "offsets_dtype":
        offs = np.empty(4, np.uint32)
    elif case == "lengths_differ":
        types_ = np.empty(2, np.uint32)
    else:
        offs = np.empty(8, np.int64)[::2]
    with pytest.raises(ValueError):
        _perfwalk.walk(buf, pos, offs, types_)


def test_perfwalk_walks_valid_records():
    buf = b"\x09\0\0\0\0\0\x08\0" * 4
    offs, types_ = np.empty(8, np.int64), np.empty(8, np.uint32)
    assert _perfwalk.walk(buf, 8, offs, types_) == (3, 32, 0)
    assert offs[:3].tolist() == [8, 16, 24] and types_[:3].tolist() == [9, 9, 9]


# ---- tracefs page walker -----------------------------------------------------

def _page_args(page_size: int = 64, n_pages: int = 2) -> list[Any]:
    cap = 16
    return [bytes(page_size * n_pages), page_size, np.empty(cap, np.int64),
            np.empty(cap, np.int64), np.empty(cap, np.int32),
            np.empty((n_pages, 3), np.int64)]


def test_pagewalk_walks_empty_pages():
    args = _page_args()
    assert _pagewalk.walk(*args) == (0, -1, "")


@pytest.mark.parametrize("page_size", [0, -4096, 16, 48, 1 << 40])
def test_pagewalk_refuses_impossible_page_sizes(page_size):
    args = _page_args()
    args[1] = page_size
    with pytest.raises(ValueError):
        _pagewalk.walk(*args)


@pytest.mark.parametrize("slot", [2, 3, 4, 5])
@pytest.mark.parametrize("how", ["dtype", "shorter", "non_contiguous"])
def test_pagewalk_refuses_bad_output_arrays(slot, how):
    args = _page_args()
    args[slot] = _BREAKERS[how](args[slot])
    with pytest.raises(ValueError):
        _pagewalk.walk(*args)


# ---- xenalyze ----------------------------------------------------------------

def test_xenalyze_refuses_what_is_not_a_contiguous_buffer():
    with pytest.raises(ValueError):
        _xenalyze.run(None, False)
    with pytest.raises(ValueError):
        _xenalyze.run(memoryview(bytes(64))[::2], False)


# ---- ids that look like sentinels --------------------------------------------

def _trace_with_ids(path: Path, dom: int, vcpu: int) -> None:
    """Two vCPUs of one domain on two pcpus, with a lost-records span."""
    with path.open("wb") as f:
        w = XentraceWriter(f)
        w.runstate_change(0, 1_000, dom, vcpu, 1, 0)
        w.runstate_change(1, 1_500, dom, 0, 1, 0)
        w.runstate_change(0, 4_000, dom, vcpu, 0, 2)
        w.runstate_change(1, 6_000, dom, 0, 0, 1)
        w.poll()
        w.lost_records(1, 9_000, 3, dom, 0, 7_000)
        w.runstate_change(0, 10_000, dom, vcpu, 2, 1)
        w.runstate_change(0, 10_500, dom, vcpu, 1, 0)
        w.runstate_change(1, 11_000, dom, 0, 1, 0)
        w.runstate_change(0, 14_000, dom, vcpu, 0, 2)
        w.runstate_change(1, 16_000, dom, 0, 0, 2)
        w.close()


def _report(path: Path, *options: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["report", str(path), "--format", "json", "--cpu-hz", "1e9", *options],
                stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def _figures(report: dict[str, Any]) -> list[Any]:
    return [(len(d.get("members", [])), {k: s.get("ns", s.get("cycles"))
                                         for k, s in d["states"].items()})
            for d in report["domains"]]


@pytest.mark.parametrize("options", [(), ("--semantics", "xenalyze")])
def test_domain_65535_vcpu_65535_is_accounted_like_any_other_vcpu(tmp_path, options):
    """The all-ones ids once meant "loss marker" to the walker and "empty slot" to
    the xenalyze table; the figures must not depend on the ids at all."""
    high, plain = tmp_path / "high.trace", tmp_path / "plain.trace"
    _trace_with_ids(high, 65535, 65535)
    _trace_with_ids(plain, 5, 7)
    a, b = _report(high, *options), _report(plain, *options)
    assert [d["domain"] for d in a["domains"]] == ["65535"]
    assert _figures(a) == _figures(b)
    if not options:
        names = sorted(m["member"] for m in a["domains"][0]["members"])
        assert names == ["0", "65535"]
        lost = a["domains"][0]["states"]["lost"]["ns"]
        assert lost > 0
