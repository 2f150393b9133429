"""perf.data file header, ``perf_event_attr`` entries and feature sections.

Layout (tools/perf/Documentation/perf.data-file-format.txt): a 104-byte header
(``PERFILE2``, attrs, data and feature bitmap), ``perf_event_attr`` entries
with their sample ids, the data section, then the feature sections, of which
HEADER_TRACING_DATA (parsed by :mod:`.perfdata_tracing`), HEADER_NRCPUS and
HEADER_CMDLINE are read.  A file whose writer was killed keeps a zero data
size and no feature sections: its data runs to the end of the file.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import IO

from runstate.errors import InputError
from runstate.sources.formats import PERF_DATA_MAGIC
from runstate.sources.linux.perfdata_tracing import TracingDataError, parse_tracing_data
from runstate.sources.linux.tpformat import EventFormat, FormatError

MAGIC = PERF_DATA_MAGIC
HEADER_SIZE = 104
# features
FEAT_TRACING_DATA, FEAT_NRCPUS, FEAT_CMDLINE = 1, 7, 11
#: the most CPUs a Linux kernel supports (x86-64 MAXSMP: NR_CPUS 8192); a larger
#: count in a header is damage, and would size per-CPU state after it
MAX_CPUS = 8192
PERF_TYPE_TRACEPOINT = 2
_CLOCKS = {0: "realtime", 1: "mono", 4: "mono_raw", 7: "boot", 11: "tai"}


@dataclass(frozen=True, slots=True)
class Attr:
    type: int
    config: int
    sample_type: int
    read_format: int
    sample_id_all: bool
    clock: str
    ids: tuple[int, ...]
    enable_on_exec: bool = False


@dataclass(slots=True)
class Header:
    attrs: list[Attr]
    data_offset: int
    data_size: int
    truncated: bool
    formats: dict[int, EventFormat] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)
    n_cpus: int | None = None
    #: perf's own command line (HEADER_CMDLINE), if recorded
    cmdline: list[str] | None = None


def _strings(blob: bytes) -> list[str] | None:
    """A perf header string list: u32 count, then (u32 length, padded text) each."""
    try:
        count = struct.unpack_from("<I", blob)[0]
        pos, out = 4, []
        for _ in range(min(count, 4096)):
            length = struct.unpack_from("<I", blob, pos)[0]
            out.append(blob[pos + 4:pos + 4 + length].split(b"\0", 1)[0]
                       .decode("utf-8", "replace"))
            pos += 4 + length
        return out
    except struct.error:
        return None


def system_wide(cmdline: list[str] | None, attrs: list[Attr]) -> bool:
    """Whether perf traced every task (-a / -C), judged from its command line.

    Without a command line: a per-task recording of a started workload has
    enable_on_exec set; anything else is taken as system-wide.
    """
    if cmdline is None:
        return not any(a.enable_on_exec for a in attrs)
    for arg in cmdline[1:]:
        if arg == "--":
            break
        if arg in ("-a", "--all-cpus") or arg.startswith(("-C", "--cpu")):
            return True
        if arg.startswith("-") and not arg.startswith("--") and arg[1:].isalpha() \
                and "a" in arg[1:]:
            return True
    return False



def read_header(path: str, f: IO[bytes]) -> Header:
    size = os.fstat(f.fileno()).st_size
    raw = f.read(HEADER_SIZE)
    if len(raw) < 16 or raw[:8] != MAGIC:
        raise InputError(path, "not a perf.data file (no PERFILE2 magic)", offset=0)
    if struct.unpack_from("<Q", raw, 8)[0] != HEADER_SIZE:
        raise InputError(path, "pipe-mode perf.data is not supported; record to a file "
                         "(perf record -o FILE)", offset=8)
    if len(raw) < HEADER_SIZE:
        raise InputError(path, "truncated header", offset=len(raw))
    attr_size, a_off, a_size, d_off, d_size = struct.unpack_from("<5Q", raw, 16)
    features = int.from_bytes(raw[72:104], "little")
    if attr_size < 80 or a_off + a_size > size or a_size % attr_size:
        raise InputError(path, "attribute section out of bounds", offset=24)
    if d_off < HEADER_SIZE or d_off > size:
        raise InputError(path, "data section out of bounds", offset=40)
    truncated = d_size == 0 or d_off + d_size > size
    if truncated:
        d_size = size - d_off
    header = Header(_read_attrs(path, f, a_off, a_size, attr_size, size), d_off, d_size,
                    truncated)
    if not truncated:
        _read_features(path, f, header, features, d_off + d_size, size)
    return header


def _read_attrs(path: str, f: IO[bytes], off: int, size: int, entry: int,
                file_size: int) -> list[Attr]:
    f.seek(off)
    blob = f.read(size)
    attrs = []
    for base in range(0, size, entry):
        a_type, _, config, _, sample_type, read_format, flags = struct.unpack_from(
            "<IIQQQQQ", blob, base)
        clockid = struct.unpack_from("<i", blob, base + 92)[0] if entry - 16 >= 96 else 0
        use_clock = bool(flags >> 25 & 1)
        ids_off, ids_size = struct.unpack_from("<QQ", blob, base + entry - 16)
        if ids_off + ids_size > file_size or ids_size % 8:
            raise InputError(path, "attribute ids out of bounds", offset=off + base)
        f.seek(ids_off)
        ids = struct.unpack(f"<{ids_size // 8}Q", f.read(ids_size))
        clock = _CLOCKS.get(clockid, f"clockid {clockid}") if use_clock else "perf"
        attrs.append(Attr(a_type, config, sample_type, read_format, bool(flags >> 18 & 1),
                          clock, ids, bool(flags >> 12 & 1)))
    if not attrs:
        raise InputError(path, "no event attributes", offset=off)
    return attrs


def _read_features(path: str, f: IO[bytes], header: Header, bits: int, at: int,
                   size: int) -> None:
    present = [b for b in range(256) if bits >> b & 1]
    f.seek(at)
    table = f.read(16 * len(present))
    if len(table) < 16 * len(present):
        return
    for i, bit in enumerate(present):
        off, length = struct.unpack_from("<QQ", table, 16 * i)
        if off + length > size:
            raise InputError(path, f"feature section {bit} out of bounds", offset=at + 16 * i)
        if bit == FEAT_TRACING_DATA:
            f.seek(off)
            try:
                tracing = parse_tracing_data(f.read(length))
            except (TracingDataError, struct.error, UnicodeDecodeError, FormatError) as err:
                where = off + err.offset if isinstance(err, TracingDataError) else off
                raise InputError(path, f"bad tracing data section: {err}", offset=where) \
                    from None
            header.formats.update(tracing.formats)
            header.cmdlines.update(tracing.cmdlines)
        elif bit == FEAT_NRCPUS and length >= 8:
            f.seek(off)
            header.n_cpus = _cpu_count(path, f.read(8), off)
        elif bit == FEAT_CMDLINE:
            f.seek(off)
            header.cmdline = _strings(f.read(length))


def _cpu_count(path: str, raw: bytes, off: int) -> int:
    """The online CPU count of the nr_cpus feature (u32 available, u32 online), checked."""
    available, online = struct.unpack("<II", raw)
    if not 1 <= online <= min(available, MAX_CPUS):
        raise InputError(path, f"impossible CPU count in the nr_cpus section: {online} online "
                         f"of {available} (at most {MAX_CPUS})", offset=off)
    return int(online)
