from typing import Any

ABI_VERSION: int
N_BUCKETS: int
N_GLOBALS: int
N_DSTATES: int
N_MBUCKETS: int
RUNNING: int
RUNNABLE: int
BLOCKED: int
OFFLINE: int
ABSENT: int
UNKNOWN: int
UNSEEN: int
D_LOST: int
D_NONE: int
M_LOST: int
LOSS_BEGIN: int
LOSS_END: int
G_DEPTH: int
G_EPOCH: int
G_EPOCH_START: int
G_WINDOW_START: int
G_MISMATCH: int
G_NO_CHANGE: int
G_LATE: int
G_UNBALANCED: int
G_IN_LOSS_EVENTS: int
G_LAST_TIME: int

def feed(state: tuple[Any, ...], time: Any, member: Any, old: Any, new: Any,
         resolve: Any) -> None: ...
def close_all(state: tuple[Any, ...], t: int) -> None: ...
