"""What the Linux readers know of scheduler events before any are decoded (no numpy here).

The sched event kinds, thread names and groups (:class:`TaskNames`), and the
tracepoints runstate needs: a reader can check a file's header and start its
C pass with these alone, while numpy is still being imported (the perf.data
reader does, see :mod:`.perfdata`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NEEDED_EVENTS = ("sched:sched_switch", "sched:sched_wakeup", "sched:sched_wakeup_new")
RECORD_HINT = ("record them with: perf record -k mono -e sched:sched_switch,sched:sched_wakeup,"
               "sched:sched_wakeup_new,sched:sched_process_exit,sched:sched_process_fork,"
               "timer:hrtimer_expire_entry -a -- <workload>  (or 'runstate record')")
#: Linux's PID_MAX_LIMIT: a larger pid is damage
PID_LIMIT = 1 << 22


class SchedKind(IntEnum):
    SWITCH = 0
    WAKEUP = 1
    WAKEUP_NEW = 2
    EXIT = 3
    FORK = 4
    #: a task seen running, nothing more: a timer interrupt (``hrtimer_expire_entry``)
    #: names the task it interrupted (``common_pid``); pid is that task
    SEEN = 5


@dataclass(slots=True)
class TaskNames:
    """What is known about threads: names, thread groups, cgroups, start states."""

    #: tid -> comm (latest seen)
    comm: dict[int, str] = field(default_factory=dict)
    #: tid -> tgid (process id)
    tgid: dict[int, int] = field(default_factory=dict)
    #: tid -> cgroup path, where the source has it
    cgroup: dict[int, str] = field(default_factory=dict)
    #: tgid -> VM name (QEMU ``-name guest=``), where known
    vm_name: dict[int, str] = field(default_factory=dict)
    #: tid -> one-letter /proc state at record start (R, S, D, ...), where known
    start_state: dict[int, str] = field(default_factory=dict)
