from typing import Any

Buffer = Any

ABI_VERSION: int
PID_LIMIT: int
STOP_CHUNK: int
STOP_LOSS: int
STOP_FULL: int
STOP_END: int
STOP_ERROR: int
E_RECORD_SIZE: int
E_TAIL: int
E_COMPRESSED: int
E_SHORT: int
E_FORMAT: int

class Scanner:
    def __init__(self, fd: int, data_offset: int, data_size: int,
                 layout: tuple[int, int, int, int, int, int, int, int],
                 kinds: tuple[tuple[object, ...], ...], ids: Buffer,
                 flags: tuple[int, int, int], /) -> None: ...
    def read(self, columns: tuple[Buffer, ...], chunk_rows: int, /) -> tuple[int, int]: ...
    def take_loss(self) -> tuple[int, int, int, int | None]: ...
    def side_band(self) -> list[tuple[int, int, bytes]]: ...
    def names(self) -> list[tuple[int, int, bytes]]: ...
    def active(self) -> list[int]: ...
    def status(self) -> dict[str, Any]: ...
