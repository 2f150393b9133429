"""Members and domains by index, so event batches can carry small integers.

A reader registers every (domain, member) pair it meets and writes the member
index into its batches.  Registration is deterministic: reading the same input
twice gives the same indices, which lets the engine use a first pass over a
file to learn each member's initial state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(slots=True)
class DomainInfo:
    """What is known about one domain besides its events."""

    key: str
    name: str
    #: members the source says exist (e.g. a VM's configured vCPUs), if known
    expected_members: int | None = None
    #: free-form facts for reports (e.g. ``{"kind": "idle"}`` for Xen's idle domain)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class MemberInfo:
    """A member as registered: its key, display name and domain index."""

    key: str
    name: str
    domain: int


class Registry:
    """Index of domains and members.  ``member()`` registers on first use."""

    def __init__(self) -> None:
        self.domains: list[DomainInfo] = []
        self.members: list[MemberInfo] = []
        self._domain_index: dict[str, int] = {}
        self._member_index: dict[tuple[str, str], int] = {}

    def domain(self, key: str, name: str | None = None) -> int:
        """Index of domain ``key``, registering it (with ``name``) if new."""
        index = self._domain_index.get(key)
        if index is None:
            index = len(self.domains)
            self.domains.append(DomainInfo(key=key, name=name if name is not None else key))
            self._domain_index[key] = index
        elif name is not None:
            self.domains[index].name = name
        return index

    def member(self, domain_key: str, member_key: str, name: str | None = None) -> int:
        """Index of member ``member_key`` of domain ``domain_key``, registering both if new."""
        index = self._member_index.get((domain_key, member_key))
        if index is None:
            domain = self.domain(domain_key)
            index = len(self.members)
            self.members.append(
                MemberInfo(key=member_key, name=name if name is not None else member_key,
                           domain=domain)
            )
            self._member_index[(domain_key, member_key)] = index
        return index

    def find_domain(self, key: str) -> int | None:
        return self._domain_index.get(key)

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def n_domains(self) -> int:
        return len(self.domains)

    def member_domains(self) -> npt.NDArray[np.int32]:
        """Domain index of every member, as the engine's lookup array."""
        return np.fromiter((m.domain for m in self.members), dtype=np.int32,
                           count=len(self.members))
