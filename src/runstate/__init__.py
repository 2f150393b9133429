"""runstate: how each VM or thread group spends its time in the six domain runstates.

The package is layered: ``sources`` (one reader per trace format) produce
columnar :class:`~runstate.model.events.EventBatch` objects, the ``engine``
turns them into per-domain runstate accounting, and ``analysis``/``report``/
``cli`` sit on top.  Imports only go in that direction.
"""

__version__ = "0.1.0"

from runstate.errors import InputError, RunstateError, UsageError
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
from runstate.model.states import DomainState, MemberState

__all__ = [
    "DomainState",
    "EventBatch",
    "InputError",
    "MemberState",
    "Registry",
    "RunstateError",
    "UsageError",
    "__version__",
]
