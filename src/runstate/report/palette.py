"""One palette for the states in every picture: plots, the HTML report, trace exports.

Run states are cool (blues and teal), contention warm (reds, oranges), the
mixed hazard a strong orange-red, blocked a quiet grey, ``lost`` a pale
hatched violet-grey that reads as "no data" rather than as a state.  The
colours are distinct for common colour-vision deficiencies in lightness as well
as hue, so the shares still tell run from contention when printed in grey.
"""

from __future__ import annotations

from runstate.model.states import MEMBER_BUCKETS, DomainState

#: domain state -> colour (hex RGB)
DOMAIN_COLORS: dict[DomainState, str] = {
    DomainState.FULL_RUN: "#1f5fa8",
    DomainState.PARTIAL_RUN: "#6fa8dc",
    DomainState.CONCURRENCY_HAZARD: "#e8590c",
    DomainState.FULL_CONTENTION: "#b3122e",
    DomainState.PARTIAL_CONTENTION: "#f4a259",
    DomainState.BLOCKED: "#c9c9c9",
    DomainState.LOST: "#efe9f4",
}

#: the order states are stacked and listed in: run, hazard, contention, idle, unknown
DOMAIN_ORDER: tuple[DomainState, ...] = (
    DomainState.FULL_RUN,
    DomainState.PARTIAL_RUN,
    DomainState.CONCURRENCY_HAZARD,
    DomainState.PARTIAL_CONTENTION,
    DomainState.FULL_CONTENTION,
    DomainState.BLOCKED,
    DomainState.LOST,
)

#: member bucket -> colour: running as full run, runnable as full contention
MEMBER_COLORS: dict[str, str] = {
    "running": DOMAIN_COLORS[DomainState.FULL_RUN],
    "runnable": DOMAIN_COLORS[DomainState.FULL_CONTENTION],
    "blocked": DOMAIN_COLORS[DomainState.BLOCKED],
    "offline": "#7f7f7f",
    "lost": DOMAIN_COLORS[DomainState.LOST],
}
assert tuple(MEMBER_COLORS) == MEMBER_BUCKETS

#: hatch drawn over ``lost`` wherever a picture can hatch
LOST_HATCH = "////"
LOST_EDGE = "#8e7aa6"


def label(state: DomainState) -> str:
    """Human label: ``concurrency hazard`` for ``CONCURRENCY_HAZARD``."""
    return state.name.lower().replace("_", " ")


def rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` as integers 0..255."""
    value = int(color.lstrip("#"), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255
