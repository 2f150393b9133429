from typing import Any

Buffer = Any

def walk(buffer: Buffer, pos: int, offsets: Buffer, types: Buffer, /) -> tuple[int, int, int]: ...
