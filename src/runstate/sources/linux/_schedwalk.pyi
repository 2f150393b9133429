from typing import Any

Buffer = Any

N_COUNTERS: int

def walk(events: tuple[Buffer, ...], tasks: tuple[Buffer, ...], cpus: tuple[Buffer, ...],
         out: tuple[Buffer, ...], carried: int, counters: tuple[Buffer, ...], /) -> int: ...
