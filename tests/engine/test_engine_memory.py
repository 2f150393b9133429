"""Memory: the engine's per-domain tables must not cost what their size suggests.

Each domain carries 7 episode histograms of 1888 buckets (53 KB); 10 000 thread
domains would be 530 MB if every bucket were resident, twice that while a
result copies them.  Empty buckets cost nothing (calloc'd pages), and results
do not copy the histograms.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import resource
from runstate.engine import Engine
from runstate.model.events import EventBatch
from runstate.model.registry import Registry
registry = Registry()
for d in range(10000):
    registry.member(f"t{d}", "0")
engine = Engine(registry, start_ticks=0)
engine.feed(EventBatch.from_columns([1, 2], [0, 1], [0, 0], [2, 2]))
engine.snapshot(3)
engine.finish(4)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_ten_thousand_domains_fit_in_little_memory() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], check=True, capture_output=True,
                         text=True).stdout
    assert int(out) < 250  # MiB; about 50 measured, over 1000 before
