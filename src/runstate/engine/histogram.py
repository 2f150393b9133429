"""Episode-length histograms: log-linear buckets, bounded memory, percentiles.

Lengths below 64 ticks have one bucket each; above, every power of two is split
in 32 buckets, so a bucket is at most 1/32 of its value wide and a percentile
read from it (the bucket midpoint, clamped to the exact maximum) is within
1.6 % of the exact one.  The bucket rule mirrors ``bucket_of`` in _kernel.c.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SUB_BITS = 5
SUB = 1 << SUB_BITS
LINEAR = 2 * SUB


def bucket_of(value: int, n_buckets: int) -> int:
    """The bucket index of one length (same rule as the C kernel)."""
    if value < LINEAR:
        return max(value, 0)
    shift = value.bit_length() - 1 - SUB_BITS
    index = LINEAR + (shift - 1) * SUB + ((value >> shift) - SUB)
    return min(index, n_buckets - 1)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``(low, width)`` of a bucket."""
    if index < LINEAR:
        return index, 1
    shift = (index - LINEAR) // SUB + 1
    sub = (index - LINEAR) % SUB + SUB
    return sub << shift, 1 << shift


def percentiles(
    hist: npt.NDArray[np.uint32], qs: tuple[float, ...], max_value: int
) -> tuple[int, ...]:
    """Several nearest-rank percentiles from one pass over ``hist`` (reports want three)."""
    if max_value <= 0:
        return (0,) * len(qs)  # no episode, or only empty ones: nothing to look up
    cumulative = np.cumsum(hist, dtype=np.int64)
    total = int(cumulative[-1])
    if total == 0:
        return (0,) * len(qs)
    ranks = [max(1, int(np.ceil(q * total))) for q in qs]
    out = []
    for rank, index in zip(ranks, np.searchsorted(cumulative, ranks).tolist(), strict=True):
        if rank == total:  # the longest episode: known exactly
            out.append(max_value)
            continue
        low, width = bucket_bounds(index)
        out.append(min(low + (width - 1) // 2, max_value))
    return tuple(out)
