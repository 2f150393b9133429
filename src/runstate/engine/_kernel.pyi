from typing import Any

N_BUCKETS: int
N_GLOBALS: int

def feed(state: tuple[Any, ...], time: Any, member: Any, old: Any, new: Any,
         resolve: Any) -> None: ...
def close_all(state: tuple[Any, ...], t: int) -> None: ...
