"""Benchmark: record a context-switch-heavy load with tracefs, then decode and analyse it.

Needs root.  Prints the recorder's own CPU time, the events captured and lost,
and the decode / full-analysis rates of the recording reader.

    python bench/record_decode.py [SECONDS]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runstate.analysis.pipeline import analyze
from runstate.live.recorder import record
from runstate.sources.base import ReadOptions
from runstate.sources.linux.recording import RecordingSource

#: two processes bouncing a byte through pipes: two switches and two wakeups per round
PING_PONG = """
import os, time
a, b = os.pipe(), os.pipe()
end = time.time() + {secs}
if os.fork() == 0:
    os.close(a[1]); os.close(b[0])
    while os.read(a[0], 1):
        os.write(b[1], b"x")
    os._exit(0)
os.close(a[0]); os.close(b[1])
while time.time() < end:
    os.write(a[1], b"x"); os.read(b[0], 1)
os.close(a[1])
"""


def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rec"
        load = subprocess.Popen([sys.executable, "-c", PING_PONG.format(secs=seconds + 1)])
        time.sleep(0.3)
        cpu0, wall0 = time.process_time(), time.monotonic()
        summary = record(out, pids=None, duration_s=seconds)
        cpu1, wall1 = time.process_time(), time.monotonic()
        load.wait()
        size = sum(p.stat().st_size for p in out.glob("cpu*.raw"))
        print(f"recorded {wall1 - wall0:.2f} s, {size / 2**20:.1f} MiB of pages, "
              f"recorder CPU {cpu1 - cpu0:.2f} s ({(cpu1 - cpu0) / (wall1 - wall0):.1%} of one "
              f"CPU), kernel-reported lost events: {sum(summary.lost.values())}")

        source = RecordingSource(str(out), ReadOptions())
        t0 = time.perf_counter()
        n = sum(len(chunk) for chunk in source.events())
        t1 = time.perf_counter()
        print(f"decode (pages -> merged SchedEvents): {n} events in {t1 - t0:.3f} s = "
              f"{n / (t1 - t0) / 1e6:.2f} M events/s")

        source = RecordingSource(str(out), ReadOptions())
        t0 = time.perf_counter()
        result = analyze(source)
        t1 = time.perf_counter()
        print(f"analyze (scan + 2 passes + engine): {t1 - t0:.3f} s = "
              f"{n / (t1 - t0) / 1e6:.2f} M events/s; {len(result.domains)} domains")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
