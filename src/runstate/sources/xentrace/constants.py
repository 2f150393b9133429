"""Xen trace record ids (upstream names from ``xen/include/public/trace.h``) and ``--cpu-hz``.

Only the ids the reader acts on are listed; every other record is skipped by
size.  See docs/xentrace.md for the layout these numbers describe.
"""

from __future__ import annotations

import re

from runstate.errors import UsageError

#: header word bit 31: a 64-bit TSC follows the header word
TRC_HEADER_TSC_BIT = 1 << 31
#: bits 28..30: number of extra data words
TRC_HEADER_N_SHIFT = 28
TRC_EVENT_MASK = 0x0FFFFFFF

TRC_GEN = 0x0001F000
TRC_SCHED = 0x0002F000
TRC_SCHED_MIN = 0x00021000

TRC_LOST_RECORDS = TRC_GEN + 1
TRC_TRACE_WRAP_BUFFER = TRC_GEN + 2
TRC_TRACE_CPU_CHANGE = TRC_GEN + 3

TRC_SCHED_RUNSTATE_CHANGE = TRC_SCHED_MIN + 1
TRC_SCHED_CONTINUE_RUNNING = TRC_SCHED_MIN + 2
#: ``(event & mask) == TRC_SCHED_RUNSTATE_CHANGE`` recognises a runstate change:
#: the old and new states live in bits 8..11 and 4..7 of the event id
RUNSTATE_CHANGE_MASK = 0x0FFFF00F

#: the full header word of a window header: CPU_CHANGE with 2 extra words, no TSC
CPU_CHANGE_HEADER = (2 << TRC_HEADER_N_SHIFT) | TRC_TRACE_CPU_CHANGE

#: Xen's idle domain; its vCPU n is pcpu n's idle loop
IDLE_DOMAIN = 32767
#: xenalyze's placeholder domain for "whoever ran before the first record"
DEFAULT_DOMAIN = 32768

#: the frequency xenalyze assumes when none is given
DEFAULT_CPU_HZ = 2.4e9
#: pcpu numbers at or above this are treated as corrupt
MAX_PCPUS = 4096
#: a window larger than this cannot come from a Xen trace buffer
MAX_WINDOW_BYTES = 1 << 30


def runstate_change_event(old: int, new: int) -> int:
    """Event id of a runstate change from ``old`` to ``new`` (vcpu.h state numbers)."""
    return TRC_SCHED_RUNSTATE_CHANGE | (old << 8) | (new << 4)


def header_word(event: int, n_extra: int, with_tsc: bool) -> int:
    """The 32-bit header word of a record."""
    return (event & TRC_EVENT_MASK) | (n_extra << TRC_HEADER_N_SHIFT) | (
        TRC_HEADER_TSC_BIT if with_tsc else 0)


_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}
_FREQ = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?\s*([kKmMgG]?)"
                   r"(?:[hH][zZ])?\s*$")


def parse_frequency(text: str) -> float:
    """Parse a ``--cpu-hz`` value: ``2.4G``, ``2400M``, ``2400000000``, ``1K`` (Hz).

    Unlike xenalyze (which goes through a single-precision float), the value is
    kept in double precision, so ``1234567891`` stays exact.
    """
    match = _FREQ.match(text)
    if match is None:
        raise UsageError(f"not a frequency: {text!r} (examples: 2.4G, 2400M, 2400000000)")
    mantissa, exponent, suffix = match.groups()
    value = float(mantissa + (f"e{exponent}" if exponent else "")) * _SUFFIX[suffix.upper()]
    if not value > 0 or value == float("inf"):
        raise UsageError(f"the frequency must be positive: {text!r}")
    if value >= 1 and abs(value - round(value)) < 1e-9 * value:
        return float(round(value))
    return value
