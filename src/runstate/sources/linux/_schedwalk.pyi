from typing import Any

Buffer = Any

ABI_VERSION: int
N_COUNTERS: int
N_G: int
N_WHY: int
SPAN: int
K_SWITCH: int
K_WAKEUP: int
K_WAKEUP_NEW: int
K_EXIT: int
K_FORK: int

def walk(events: tuple[Buffer, ...], tasks: tuple[Buffer, ...], cpus: tuple[Buffer, ...],
         out: tuple[Buffer, ...], carried: int, counters: tuple[Buffer, ...], /) -> int: ...
