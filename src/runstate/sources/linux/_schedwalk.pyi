from typing import Any

Buffer = Any

ABI_VERSION: int
N_COUNTERS: int
N_G: int
N_WHY: int
SPAN: int
K_SWITCH: int
K_WAKEUP: int
FR_LOSS_BEGIN: int
FR_LOSS_END: int
K_WAKEUP_NEW: int
K_EXIT: int
K_FORK: int

def walk(events: tuple[Buffer, ...], tasks: tuple[Buffer, ...], cpus: tuple[Buffer, ...],
         out: tuple[Buffer, ...], carried: int, counters: tuple[Buffer, ...],
         registry: tuple[Buffer, ...], /) -> tuple[int, int]: ...
def bounds(cpu: Buffer, kind: Buffer, pid: Buffer, other_pid: Buffer, actor: Buffer, /
           ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], int]: ...
def new_pids(kind: Buffer, pids: tuple[Buffer, Buffer, Buffer], pid_table: Buffer, /
             ) -> list[list[int]]: ...
def split(rows: tuple[Buffer, ...], n: int, cut: int, all: bool, floor: int, member: Buffer,
          deferred: Buffer, batch: tuple[Buffer, ...], /) -> tuple[int, int]: ...
def first_rows(member: Buffer, old_state: Buffer, new_state: Buffer, start: int, table: Buffer,
               depth: int, /) -> tuple[int, int, int]: ...
