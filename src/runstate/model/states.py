"""Member states and the six domain runstates (plus ``lost``).

Member states follow Xen's public ABI (``xen/include/public/vcpu.h``:
``RUNSTATE_running`` 0, ``runnable`` 1, ``blocked`` 2, ``offline`` 3).  Two
more values describe membership rather than scheduling: ``ABSENT`` (the member
does not exist at that moment: not created yet, exited, vCPU taken down) and,
inside the engine only, ``UNKNOWN`` and ``UNSEEN``.

Domain runstates use the hypervisor's numbering (the interface proposed for
Xen as "xen: Implement domain runstates"): full_run 0 ... partial_contention 5;
``LOST`` is the seventh state for time whose state the data cannot tell
(docs/semantics.md).
"""

from __future__ import annotations

from enum import IntEnum


class MemberState(IntEnum):
    """State of one member (vCPU or thread).  Values are the event-batch codes."""

    RUNNING = 0
    RUNNABLE = 1
    BLOCKED = 2
    OFFLINE = 3
    ABSENT = 4
    #: engine-internal: the member exists but its state is not known (after lost data)
    UNKNOWN = 5
    #: engine-internal: never seen in the current epoch; does not count
    UNSEEN = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, text: str) -> MemberState:
        """Parse a state name as written in event files (case-insensitive)."""
        state = _EVENT_LABELS.get(text.strip().lower())
        if state is None:
            raise ValueError(text)
        return state


#: Names accepted in event files.  ``absent`` marks creation (as old state) and exit.
_EVENT_LABELS = {
    "running": MemberState.RUNNING,
    "runnable": MemberState.RUNNABLE,
    "blocked": MemberState.BLOCKED,
    "offline": MemberState.OFFLINE,
    "absent": MemberState.ABSENT,
}

#: The states a member can be reported in (the per-member accounting buckets).
MEMBER_BUCKETS = ("running", "runnable", "blocked", "offline", "lost")


class DomainState(IntEnum):
    """The six domain runstates, in the hypervisor's numbering, plus ``LOST``."""

    FULL_RUN = 0
    FULL_CONTENTION = 1
    CONCURRENCY_HAZARD = 2
    BLOCKED = 3
    PARTIAL_RUN = 4
    PARTIAL_CONTENTION = 5
    LOST = 6

    @property
    def label(self) -> str:
        return self.name.lower()


#: Marker codes in an EventBatch's ``new_state`` column when ``member == -1``.
LOSS_BEGIN = 10
LOSS_END = 11
