"""Converting generic CSV member events into a xentrace file (``runstate convert``).

Domain keys must be Xen domain ids (0..32767) and member keys vCPU ids
(0..65535); states running/runnable/blocked/offline (``absent`` has no Xen
record).  Times become TSC cycles ``tsc_base + (time_ns - first) * cpu_hz / 1e9``
(rounded down).  The CSV does not say which pcpu wrote a record, so every
record goes to pcpu 0, in windows of at most ``window_bytes``.  A lost-data
window (``new_state=lost`` ... ``old_state=lost``) becomes one
``TRC_LOST_RECORDS`` at the window end with ``first_tsc`` at its start.
"""

from __future__ import annotations

from runstate.errors import InputError
from runstate.model.registry import Registry
from runstate.model.states import LOSS_BEGIN, LOSS_END, MemberState
from runstate.sources.base import ReadOptions
from runstate.sources.generic import CSV_READER
from runstate.sources.xentrace.constants import IDLE_DOMAIN
from runstate.sources.xentrace.writer import WindowStats, XentraceWriter

DEFAULT_TSC_BASE = 1_000_000_000_000


def csv_to_xentrace(src: str, out: str, cpu_hz: float, *, tsc_base: int = DEFAULT_TSC_BASE,
                    window_bytes: int = 1 << 16) -> WindowStats:
    """Write the events of CSV file ``src`` as xentrace file ``out``."""
    source = CSV_READER.open(src, None, ReadOptions())
    hz = int(round(cpu_hz))
    if hz <= 0:
        raise InputError(src, "cpu_hz must be at least 1 Hz")
    ids: dict[int, tuple[int, int]] = {}
    first: int | None = None
    loss_start: int | None = None
    with open(out, "wb") as f:
        w = XentraceWriter(f)
        for batch in source.batches():
            for t, m, old, new in zip(batch.time.tolist(), batch.member.tolist(),
                                      batch.old_state.tolist(), batch.new_state.tolist(),
                                      strict=True):
                first = t if first is None else first
                tsc = tsc_base + (t - first) * hz // 10**9
                if m < 0:
                    if new == LOSS_BEGIN and loss_start is None:
                        loss_start = tsc
                    elif new == LOSS_END and loss_start is not None:
                        w.lost_records(0, max(tsc, loss_start + 1), 1, IDLE_DOMAIN, 0,
                                       loss_start)
                        loss_start = None
                    continue
                dom, vcpu = ids.get(m) or ids.setdefault(m, _ids(src, source.registry, m))
                if old > MemberState.OFFLINE or new > MemberState.OFFLINE:
                    raise InputError(src, "state 'absent' has no xentrace record "
                                     f"(member {dom}.{vcpu} at {t} ns)")
                w.runstate_change(0, tsc, dom, vcpu, old, new)
                if w.pending(0) >= window_bytes:
                    w.flush(0)
        return w.close()


def _ids(src: str, registry: Registry, member: int) -> tuple[int, int]:
    info = registry.members[member]
    dom_key = registry.domains[info.domain].key
    try:
        dom, vcpu = int(dom_key), int(info.key)
    except ValueError:
        raise InputError(src, f"domain {dom_key!r} / member {info.key!r}: xentrace needs "
                         "numeric domain and vCPU ids") from None
    if not (0 <= dom <= IDLE_DOMAIN and 0 <= vcpu <= 0xFFFF):
        raise InputError(src, f"domain {dom} / vCPU {vcpu} out of range (0..32767 / 0..65535)")
    return dom, vcpu
