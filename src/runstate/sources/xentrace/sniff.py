"""Whether some bytes look like a xentrace file, without loading the reader (or numpy).

A xentrace file has no magic number: it is a run of per-pcpu windows, each a
CPU_CHANGE header (pcpu, size) and then records whose class field has one bit
set.  Checking the first few windows tells it apart from every other format.
"""

from __future__ import annotations

from runstate.sources.xentrace.constants import CPU_CHANGE_HEADER, MAX_PCPUS, MAX_WINDOW_BYTES

#: how many windows a sniff validates
SNIFF_WINDOWS = 4


def is_xentrace(path: str, head: bytes) -> bool:
    """The registry's test: ``head`` starts with well-formed windows."""
    return sniff_windows(head)


def sniff_windows(head: bytes) -> bool:
    """True if ``head`` starts with up to SNIFF_WINDOWS well-formed windows of records."""
    off, seen = 0, 0
    while seen < SNIFF_WINDOWS and len(head) - off >= 12:
        hdr, pcpu, size = (int.from_bytes(head[off + i:off + i + 4], "little")
                           for i in (0, 4, 8))
        if hdr != CPU_CHANGE_HEADER or pcpu >= MAX_PCPUS or size % 4 or size > MAX_WINDOW_BYTES:
            return False
        if not _records_ok(head, off + 12, min(off + 12 + size, len(head))):
            return False
        off += 12 + size
        seen += 1
    return seen > 0


def _records_ok(head: bytes, off: int, end: int) -> bool:
    """Records in [off, end) have one-hot classes (the last may be cut by ``end``)."""
    while end - off >= 4:
        hdr = int.from_bytes(head[off:off + 4], "little")
        cls = (hdr >> 16) & 0xFFF
        if cls == 0 or cls & (cls - 1):
            return False
        off += 4 + 8 * (hdr >> 31) + 4 * ((hdr >> 28) & 7)
    return True
