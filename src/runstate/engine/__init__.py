"""The engine: member state changes in, domain runstate accounting out."""

from runstate.engine.core import Engine
from runstate.engine.resolve import Resolution, Resolver
from runstate.engine.results import (
    DomainResult,
    IntervalResult,
    MemberResult,
    RunResult,
    StateStats,
)

__all__ = [
    "DomainResult",
    "Engine",
    "IntervalResult",
    "MemberResult",
    "Resolution",
    "Resolver",
    "RunResult",
    "StateStats",
]
