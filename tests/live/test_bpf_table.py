"""The kernel's group records as columns (``bpf.table.group_table``), against the same
figures worked out one group and one field at a time (no root needed)."""

from __future__ import annotations

import numpy as np
import pytest

from runstate.live.bpf.loader import GROUP_DTYPE, MEMBER_DTYPE, Counters
from runstate.live.bpf.table import NeverLess, group_table, members_per_group
from runstate.model.states import MEMBER_BUCKETS

NOW = 10_000_000


def _groups(n: int, seed: int, sparse: bool = False) -> Counters:
    """Random groups; ``sparse``: many never had a counting member (no member row, no
    state, never started), so the table leaves them out."""
    rng = np.random.default_rng(seed)
    g = np.zeros(n, GROUP_DTYPE)
    g["state"] = np.where(sparse & (rng.random(n) < 0.5), -1, rng.integers(-1, 7, n))
    g["since"] = rng.integers(NOW - 10_000, NOW + 10_000, n)  # some stamped after the read
    g["ns"] = rng.integers(0, 10**9, (n, 7))
    g["first_ns"] = np.where(rng.random(n) < (0.5 if sparse else 0.8), rng.integers(1, NOW, n), 0)
    g["member_ns"] = rng.integers(0, 10**9, (n, 3))
    g["mlast"] = np.where(rng.random(n) < 0.8, rng.integers(NOW - 10_000, NOW + 10_000, n), 0)
    for field in ("n_running", "n_runnable", "n_blocked"):
        g[field] = rng.integers(-1, 4, n)
    g["missed"] = rng.integers(0, 5, n)
    g["changes"] = rng.integers(0, 100, n)
    ids = rng.choice(1 << 20, n, replace=False).astype(np.uint32)
    owners = rng.choice(ids, n // 2 if sparse else 3 * n)  # member rows: some groups have none
    members = np.zeros(len(owners), MEMBER_DTYPE)
    members["group"] = owners
    return Counters(ids, g, np.arange(len(owners), dtype=np.uint32), members, 0)


def _expected(c: Counters, members: list[int]) -> dict[int, dict[str, object]]:
    """Each shown group's figures, field by field."""
    out: dict[int, dict[str, object]] = {}
    for i, gid in enumerate(c.group_ids.tolist()):
        r = c.groups[i]
        state = int(r["state"])
        if not (members[i] > 0 or state >= 0 or int(r["first_ns"]) != 0):
            continue
        totals = [int(v) for v in r["ns"]]
        if state >= 0:
            totals[state] += max(0, NOW - int(r["since"]))
        mlast = int(r["mlast"])
        elapsed = max(0, NOW - mlast) if mlast else 0
        member_ns = dict.fromkeys(MEMBER_BUCKETS, 0)
        for k, (bucket, field) in enumerate(zip(("running", "runnable", "blocked"),
                                                ("n_running", "n_runnable", "n_blocked"),
                                                strict=True)):
            member_ns[bucket] = int(r["member_ns"][k]) + elapsed * max(0, int(r[field]))
        out[gid] = {"members": members[i], "state": state,
                    "since": min(int(r["since"]), NOW) if state >= 0 else 0,
                    "totals": totals, "member_ns": [member_ns[b] for b in MEMBER_BUCKETS],
                    "missed": int(r["missed"]), "changes": int(r["changes"])}
    return out


@pytest.mark.parametrize("sparse", [False, True])
def test_columns_match_the_groups_one_by_one(sparse: bool) -> None:
    for seed in range(20):
        c = _groups(50, seed, sparse)
        members = members_per_group(c)
        owners = c.members["group"].tolist()
        assert members.tolist() == [owners.count(gid) for gid in c.group_ids.tolist()]
        ids, table = group_table(c, NOW, members)
        got = {gid: {"members": int(table.members[i]), "state": int(table.state[i]),
                     "since": int(table.since_ns[i]), "totals": table.totals_ns[i].tolist(),
                     "member_ns": table.member_ns[i].tolist(), "missed": int(table.missed[i]),
                     "changes": int(table.changes[i])}
               for i, gid in enumerate(ids.tolist())}
        assert got == _expected(c, members.tolist())
    if sparse:  # the filter, not only the shortcut for tables that keep every group
        assert len(ids) < len(c.group_ids)


def test_totals_never_go_down_per_group() -> None:
    """Against a dictionary of the totals each group showed at the last read, over reads
    whose groups come and go and change order."""
    rng = np.random.default_rng(7)
    guard, best = NeverLess(), {}
    pool = rng.choice(1 << 20, 40, replace=False)
    last_ids = np.zeros(0, np.int64)
    for _ in range(30):
        same = bool(rng.random() < 0.3)
        ids = last_ids if same else rng.permutation(  # same: the last read's groups and order
            rng.choice(pool, int(rng.integers(0, 40)), replace=False))
        totals = rng.integers(0, 100, (len(ids), 7))
        got = guard.apply(ids.astype(np.int64), totals.astype(np.int64), same)
        shown = {}
        for gid, row, out in zip(ids.tolist(), totals.tolist(), got.tolist(), strict=True):
            want = [max(a, b) for a, b in zip(row, best.get(gid, row), strict=True)]
            assert out == want
            shown[gid] = want
        best, last_ids = shown, ids
