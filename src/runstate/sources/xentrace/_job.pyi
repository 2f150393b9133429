from typing import Any

ABI_VERSION: int
MAX_PCPUS: int
N_STATS: int
SCAN_DONE: int
SCAN_GENERIC: int
SUM_FIRST: int
SUM_LAST: int
SUM_LAST_CHANGE: int
SUM_ROWS: int
SUM_TRUNCATED: int
N_SUM: int
F_LENIENT: int

class Job:
    def __init__(self, buf: Any, flags: int, release: bool) -> None: ...
    def start(self, threads: int, account: bool, parts: int, keep_rows: int,
              chunk_bytes: int) -> None: ...
    def scanned(self) -> int: ...
    def result(self) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]: ...
    def account(self) -> int: ...
    def export(self, state: tuple[Any, ...]) -> bool: ...
    def close(self) -> None: ...
