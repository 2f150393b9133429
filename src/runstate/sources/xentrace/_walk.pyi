from typing import Any

ABI_VERSION: int
N_CURSOR: int
N_STATS: int
MAX_PCPUS: int
MAX_WINDOW: int
C_OFF: int
C_WEND: int
C_PCPU: int
C_STATUS: int
C_ERR_OFF: int
C_ERR_CODE: int
C_ERR_WORD: int
C_ERR_AUX: int
ST_FULL: int
ST_MORE: int
ST_ERROR: int
K_CHANGE: int
K_CONTINUE: int
K_LOST: int
K_WRAP: int
K_OTHER: int
F_LENIENT: int
F_OTHER_ROWS: int
R_LOSS_BEGIN: int
R_LOSS_END: int
S_WINDOWS: int
S_CHANGE: int
S_CONTINUE: int
S_LOST: int
S_LOST_COUNT: int
S_WRAP: int
S_OTHER: int
S_BAD: int
S_RESYNC: int
S_FIRST_TSC: int
S_LAST_TSC: int
S_RECORDS: int
S_ROUNDS: int
S_PREV_PCPU: int

def decode(buf: Any, base: int, limit: int, cursor: Any, stats: Any, pcpu_tsc: Any,
           cols: tuple[Any, ...], flags: int) -> int: ...
def index(buf: Any, base: int, cursor: Any, out_end: Any, out_pcpu: Any, out_first: Any,
          flags: int) -> int: ...
def lookup(keys: Any, out: Any, tkeys: Any, tvals: Any) -> int: ...
def emit(rows: tuple[Any, ...], table: tuple[Any, ...], seen: Any, state: Any,
         out: tuple[Any, ...]) -> int: ...
