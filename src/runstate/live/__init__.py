"""Live tracing on this host: tracefs instance management and per-CPU page reading,
in-kernel accounting (eBPF) and :class:`Monitor`, the live domain runstate counters.

``Monitor`` and the snapshot records are imported on first use, so
``import runstate.live`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runstate.live.monitor import Monitor
    from runstate.live.snapshot import LiveDomain, LiveMember, LiveSnapshot, Selection

__all__ = ["SOURCES", "LiveDomain", "LiveMember", "LiveSnapshot", "Monitor", "Selection"]

#: the sources a monitor can count with ("auto": the first of the others that starts);
#: here, so that a command line can offer them without loading any of them
SOURCES = ("auto", "bpf", "tracefs")


def __getattr__(name: str) -> Any:
    if name == "Monitor":
        from runstate.live.monitor import Monitor

        return Monitor
    if name in ("LiveDomain", "LiveMember", "LiveSnapshot", "Selection"):
        from runstate.live import snapshot

        return getattr(snapshot, name)
    raise AttributeError(f"module 'runstate.live' has no attribute {name!r}")
