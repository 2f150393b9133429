from typing import Any

N_CURSOR: int
N_STATS: int
MAX_PCPUS: int

def decode(buf: Any, base: int, limit: int, cursor: Any, stats: Any, pcpu_tsc: Any,
           cols: tuple[Any, ...], flags: int) -> int: ...
def index(buf: Any, base: int, cursor: Any, out_end: Any, out_pcpu: Any, out_first: Any,
          flags: int) -> int: ...
def keep(member: Any, kind: Any, seen: Any, depth: Any) -> None: ...
