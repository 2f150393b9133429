"""Byte edits over a seed input: random mutants, replay and minimization.

A mutant is a seed plus edits, each ``(offset, delete, insert)``; applying them
in order gives the mutated bytes.  Integer-aware edits overwrite aligned words
with boundary values (0, -1, 2^31, 2^63...), which is how a count or an offset
read from a file turns absurd.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

_BOUNDARY = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
             0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF)
_TEXT_TOKENS = (b"-1", b"0", b"99999999999999999999", b"nan", b"\n", b",", b"\"", b"{",
                b"}", b"lost", b"absent", b"running", b"[", b"]", b":", b" ", b"\x00",
                b"\xff", b"1e308", b"-9223372036854775808", b"9223372036854775808")


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``delete`` bytes at ``offset`` by ``insert``."""

    offset: int
    delete: int
    insert: bytes

    def to_json(self) -> list[object]:
        return [self.offset, self.delete, self.insert.hex()]

    @classmethod
    def from_json(cls, item: list[object]) -> Edit:
        offset, delete, insert = item
        assert isinstance(offset, int) and isinstance(delete, int) and isinstance(insert, str)
        return cls(offset, delete, bytes.fromhex(insert))


def apply(data: bytes, edits: list[Edit]) -> bytes:
    """The bytes of ``data`` with ``edits`` applied in order (offsets clamped)."""
    b = bytearray(data)
    for e in edits:
        at = min(e.offset, len(b))
        b[at:at + e.delete] = e.insert
    return bytes(b)


def _flip(rng: random.Random, data: bytes) -> Edit:
    at = rng.randrange(len(data))
    return Edit(at, 1, bytes([data[at] ^ (1 << rng.randrange(8))]))


def _byte(rng: random.Random, data: bytes) -> Edit:
    return Edit(rng.randrange(len(data)), 1, bytes([rng.randrange(256)]))


def _word(rng: random.Random, data: bytes) -> Edit:
    size = rng.choice((2, 4, 8))
    at = rng.randrange(max(1, len(data) - size)) // size * size
    value = rng.choice(_BOUNDARY) if rng.random() < 0.7 else rng.getrandbits(8 * size)
    delta = rng.choice((0, 0, 1, -1))
    value = (value + delta) % (1 << (8 * size))
    return Edit(at, size, value.to_bytes(size, "little"))


def _truncate(rng: random.Random, data: bytes) -> Edit:
    at = rng.randrange(len(data))
    return Edit(at, len(data) - at, b"")


def _delete(rng: random.Random, data: bytes) -> Edit:
    return Edit(rng.randrange(len(data)), rng.randint(1, 64), b"")


def _insert(rng: random.Random, data: bytes) -> Edit:
    at = rng.randrange(len(data))
    n = rng.choice((1, 2, 3, 4, 8, rng.randint(1, 64)))
    return Edit(at, 0, bytes(rng.randrange(256) for _ in range(n)))


def _splice(rng: random.Random, data: bytes) -> Edit:
    src = rng.randrange(len(data))
    chunk = data[src:src + rng.randint(1, 512)]
    return Edit(rng.randrange(len(data)), rng.choice((0, len(chunk))), chunk)


def _token(rng: random.Random, data: bytes) -> Edit:
    return Edit(rng.randrange(len(data)), rng.choice((0, 1, 2)), rng.choice(_TEXT_TOKENS))


_MUTATORS: tuple[Callable[[random.Random, bytes], Edit], ...] = (
    _flip, _byte, _word, _word, _truncate, _delete, _insert, _splice, _token)


def random_edits(rng: random.Random, data: bytes) -> list[Edit]:
    """One to four edits, each drawn against the bytes the previous ones left."""
    edits: list[Edit] = []
    current = data
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        if not current:
            break
        edit = rng.choice(_MUTATORS)(rng, current)
        edits.append(edit)
        current = apply(current, [edit])
    return edits


def minimize(edits: list[Edit], still_fails: Callable[[list[Edit]], bool]) -> list[Edit]:
    """Drop edits (then shorten inserts) while the failure persists."""
    edits = list(edits)
    i = 0
    while i < len(edits) and len(edits) > 1:
        trial = edits[:i] + edits[i + 1:]
        if still_fails(trial):
            edits = trial
        else:
            i += 1
    for i, e in enumerate(edits):
        while len(e.insert) > 1:
            shorter = Edit(e.offset, e.delete, e.insert[: len(e.insert) // 2])
            trial = edits[:i] + [shorter] + edits[i + 1:]
            if not still_fails(trial):
                break
            e = shorter
            edits = trial
    return edits
