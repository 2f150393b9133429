"""The fast path's C kernels (``_job``, ``_merge``) refuse a caller's mistakes with
ValueError, survive bytes that are not what they were promised, and stop cleanly
when abandoned half-way (their other threads included).

Run under the sanitizer build too (scripts/sanitize.sh): a missing check shows
there as an AddressSanitizer report instead of a pass.
"""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pytest

from runstate.sources.xentrace import _job, _merge
from runstate.sources.xentrace.synth import SynthConfig, generate
from tests.xen.helpers import trace_bytes

ROWS = 64


def a_trace(seed: int = 3, steps: int = 2000) -> bytes:
    return trace_bytes(generate(seed, SynthConfig(n_pcpus=4, steps=steps)), seed=seed,
                       poll=50_000, high_water=256, other_every=2)


def job(data: Any, threads: int = 1, chunk_bytes: int = 1 << 30, keep_rows: int = 0,
        flags: int = 0, parts: int = 1) -> Any:
    """A Job on ``data`` with its first pass started."""
    started = _job.Job(data, flags, False)
    started.start(threads, False, parts, keep_rows, chunk_bytes)
    return started


def scanned(data: bytes, n_groups: int = 1) -> tuple[tuple[np.ndarray, ...], np.ndarray,
                                                    np.ndarray]:
    """Groups of the pcpus with vCPU rows, vCPU keys and their first offsets, from a
    Job's first pass."""
    scan = job(data)
    assert scan.scanned() == _job.SCAN_DONE
    _, _, _, pcpu_rows, _, firsts = (np.frombuffer(b, np.int64) for b in scan.result())
    key, _, off, _ = firsts.reshape(-1, 4).T
    pcpus = np.flatnonzero(pcpu_rows).astype(np.int32)
    groups = tuple(pcpus[g::n_groups].copy() for g in range(n_groups))
    return groups, np.ascontiguousarray(key), np.ascontiguousarray(off)


def slots(n: int = 2, rows: int = ROWS) -> tuple[tuple[Any, ...], ...]:
    return tuple((np.empty(rows, np.int64), np.empty(rows, np.int32), np.empty(rows, np.int8),
                  np.empty(rows, np.int8)) for _ in range(n))


def merged_rows(merger: Any, out: tuple[tuple[Any, ...], ...]) -> int:
    total = 0
    while True:
        slot, n = merger.next()
        assert 0 <= slot < len(out) and 0 <= n <= ROWS
        if n == 0:
            return total
        assert np.all(np.diff(out[slot][0][:n]) >= 0)
        total += n


# ---- Job: the first pass -------------------------------------------------------

@pytest.mark.parametrize("threads,chunk_bytes", [(1, 1 << 30), (2, 1 << 30), (2, 4096)])
def test_the_first_pass_counts_every_vcpu_row_of_a_valid_trace(threads: int,
                                                               chunk_bytes: int) -> None:
    data = a_trace()
    sc = generate(3, SynthConfig(n_pcpus=4, steps=2000))
    scan = job(data, threads, chunk_bytes)
    assert scan.scanned() == _job.SCAN_DONE
    summary = np.frombuffer(scan.result()[4], np.int64)
    assert summary[_job.SUM_ROWS] == len(sc.kept())


def test_a_job_starts_once_and_refuses_what_is_not_a_buffer() -> None:
    with pytest.raises(ValueError):
        _job.Job(object(), 0, False)
    scan = _job.Job(a_trace(), 0, False)
    with pytest.raises(ValueError):
        scan.scanned()  # not started
    scan.start(1, False, 1, 0, 1 << 30)
    with pytest.raises(ValueError):
        scan.start(1, False, 1, 0, 1 << 30)
    assert scan.scanned() == _job.SCAN_DONE
    with pytest.raises(ValueError, match="not that far"):
        scan.export(())  # nothing accounted
    scan.close()
    with pytest.raises(ValueError):
        scan.result()


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("threads,chunk_bytes", [(1, 1 << 30), (2, 256)])
def test_a_job_on_random_bytes_asks_for_the_generic_path(seed: int, threads: int,
                                                         chunk_bytes: int) -> None:
    """Bytes that look like nothing, or a trace with bytes overwritten: never a crash,
    and never a fast-path result for a file with an error; nor an accounting one."""
    rng = random.Random(seed)
    if seed % 2:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    else:
        raw = bytearray(a_trace(seed, 300))
        for _ in range(8):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        data = bytes(raw)
    scan = job(data, threads, chunk_bytes, keep_rows=rng.choice([0, 40, 1 << 20]),
               flags=(seed // 2) % 2 and _job.F_LENIENT, parts=rng.choice([1, 2, 8]))
    status = scan.scanned()
    assert status in (_job.SCAN_DONE, _job.SCAN_GENERIC)
    if seed % 2:
        assert status == _job.SCAN_GENERIC
    assert scan.account() >= 0 if status == _job.SCAN_DONE else scan.account() == -1


# ---- Merger ------------------------------------------------------------------

@pytest.mark.parametrize("thread,n_groups", [(False, 1), (True, 1), (True, 2)])
def test_merger_yields_every_kept_row_in_time_order(thread: bool, n_groups: int) -> None:
    data = a_trace()
    sc = generate(3, SynthConfig(n_pcpus=4, steps=2000))
    repeats = sum(1 for i, e in enumerate(sc.kept()) if e.cont and any(
        (x.dom, x.vcpu) == (e.dom, e.vcpu) for x in sc.kept()[:i]))
    merger = _merge.Merger(data, *scanned(data, n_groups), 0, False)
    out = slots()
    merger.start(out, thread)
    assert merged_rows(merger, out) == len(sc.kept()) - repeats
    assert merger.next() == (0, 0)
    merger.close()


@pytest.mark.parametrize("case", ["pcpus_dtype", "pcpu_range", "pcpu_twice", "pcpu_in_both",
                                  "no_groups", "three_groups", "groups_list", "keys_dtype",
                                  "key_twice", "key_negative", "offsets_short", "keys_strided"])
def test_merger_refuses_impossible_pcpus_and_keys(case: str) -> None:
    data = a_trace()
    groups, keys, offs = scanned(data)
    pcpus: Any = groups[0]
    if case == "pcpus_dtype":
        groups = (pcpus.astype(np.int64),)
    elif case == "pcpu_range":
        groups = (np.array([0, _merge.MAX_PCPUS], np.int32),)
    elif case == "pcpu_twice":
        groups = (np.array([1, 1], np.int32),)
    elif case == "pcpu_in_both":
        groups = (pcpus, pcpus[:1].copy())
    elif case == "no_groups":
        groups = ()
    elif case == "three_groups":
        groups = (pcpus[:1].copy(), pcpus[1:2].copy(), pcpus[2:].copy())
    elif case == "groups_list":
        groups = [pcpus]  # type: ignore[assignment]
    elif case == "keys_dtype":
        keys = keys.astype(np.int32)
    elif case == "key_twice":
        keys, offs = np.repeat(keys[:1], 2), np.repeat(offs[:1], 2)
    elif case == "key_negative":
        keys = keys.copy()
        keys[0] = -1
    elif case == "offsets_short":
        offs = offs[:-1].copy()
    else:
        keys = np.repeat(keys, 2)[::2]
    with pytest.raises(ValueError):
        _merge.Merger(data, groups, keys, offs, 0, False)


@pytest.mark.parametrize("case", ["not_tuple", "empty", "three_columns", "dtype", "lengths",
                                  "read_only", "no_rows"])
def test_merger_refuses_bad_slots(case: str) -> None:
    data = a_trace()
    merger = _merge.Merger(data, *scanned(data), 0, False)
    out: Any = slots()
    if case == "not_tuple":
        out = list(out)
    elif case == "empty":
        out = ()
    elif case == "three_columns":
        out = (out[0][:3],)
    elif case == "dtype":
        out = ((out[0][0].astype(np.int32), *out[0][1:]),)
    elif case == "lengths":
        out = ((out[0][0][:8].copy(), *out[0][1:]),)
    elif case == "read_only":
        out[0][1].flags.writeable = False
    else:
        out = slots(1, 0)
    with pytest.raises(ValueError):
        merger.start(out, True)
    with pytest.raises(ValueError):
        merger.next()


def test_merger_must_be_started_once_and_not_used_after_close() -> None:
    data = a_trace()
    merger = _merge.Merger(data, *scanned(data), 0, False)
    with pytest.raises(ValueError):
        merger.next()
    two = _merge.Merger(data, *scanned(data, 2), 0, False)
    with pytest.raises(ValueError, match="needs threads"):
        two.start(slots(), False)
    merger.start(slots(), True)
    with pytest.raises(ValueError):
        merger.start(slots(), True)
    merger.close()
    with pytest.raises(ValueError):
        merger.next()
    merger.close()


@pytest.mark.parametrize("thread,n_groups", [(False, 1), (True, 1), (True, 2)])
def test_merger_over_other_bytes_than_scanned_is_an_error_not_a_crash(thread: bool,
                                                                      n_groups: int) -> None:
    """A file that changed between the passes: rows it cannot place are refused."""
    data = a_trace()
    groups, keys, offs = scanned(data, n_groups)
    other = a_trace(seed=99)
    merger = _merge.Merger(other, groups, keys[:2].copy(), offs[:2].copy(), 0, False)
    out = slots()
    merger.start(out, thread)
    with pytest.raises(ValueError, match="not what the first pass read"):
        merged_rows(merger, out)
    merger.close()


def test_an_abandoned_threaded_merge_stops_and_lets_go_of_the_buffer() -> None:
    """Closing half-way joins the producer thread; the buffer can be resized again."""
    buf = io.BytesIO(a_trace(steps=20_000))
    view = buf.getbuffer()
    merger = _merge.Merger(view, *scanned(bytes(view), 2), 0, False)
    out = slots(3)
    merger.start(out, True)
    assert merger.next()[1] == ROWS
    with pytest.raises(BufferError):
        buf.write(b"x" * len(view) * 2)
    merger.close()
    del view
    buf.write(b"x")  # no export left
