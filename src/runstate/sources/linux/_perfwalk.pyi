from typing import Any

Buffer = Any

ABI_VERSION: int
PERF_RECORD_AUXTRACE: int

def walk(buffer: Buffer, pos: int, offsets: Buffer, types: Buffer, /) -> tuple[int, int, int]: ...
