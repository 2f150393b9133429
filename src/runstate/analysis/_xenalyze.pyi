from typing import Any

ABI_VERSION: int
MAX_PCPUS: int
N_DSTATES: int
IDLE_DOMAIN: int

def run(buf: Any, release: bool) -> tuple[Any, ...]: ...
