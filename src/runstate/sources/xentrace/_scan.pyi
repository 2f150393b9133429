from typing import Any

ABI_VERSION: int
SCAN_MORE: int
SCAN_DONE: int
SCAN_GENERIC: int
MAX_PCPUS: int
N_STATS: int
SUM_FIRST: int
SUM_LAST: int
SUM_LAST_CHANGE: int
SUM_ROWS: int
SUM_TRUNCATED: int
N_SUM: int
F_LENIENT: int

class Scanner:
    def __init__(self, flags: int) -> None: ...
    def run(self, buf: Any, release: bool, threads: int) -> int: ...
    def result(self) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]: ...
