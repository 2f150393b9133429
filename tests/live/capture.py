"""Capture one tracefs buffer twice: the kernel's text rendering, then the raw pages.

Used by the live tests and, run as a script, to make the small fixture under
tests/data/linux/tracefs/ (``python -m tests.live.capture DIR SECONDS``).
Tracing is switched off before either read, so both see the same events.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from runstate.live import procinfo
from runstate.live.recorder import format_files
from runstate.live.tracefs import Tracefs, TraceInstance, find_tracefs
from runstate.sources.linux.recording import RecordingMeta, RecordingWriter

#: a few threads that spin and sleep, so switches, wakeups, forks and exits all occur
WORKLOAD = """
import threading, time
def work(n):
    end = time.time() + {secs}
    while time.time() < end:
        x = 0
        for i in range(20000 * n):
            x += i
        time.sleep(0.0005 * n)
ts = [threading.Thread(target=work, args=(n,)) for n in (1, 2, 3)]
for t in ts: t.start()
for t in ts: t.join()
"""


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


def capture(out: Path, seconds: float, *, buffer_kb: int = 1024,
            tracefs: Tracefs | None = None) -> str:
    """Record the workload (pid-filtered) into ``out``; returns the kernel's text rendering."""
    tracefs = find_tracefs() if tracefs is None else tracefs
    with TraceInstance.create(tracefs) as inst:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)\n"
                                 + WORKLOAD.format(secs=seconds)])
        try:
            inst.configure(pids=[proc.pid], buffer_kb=buffer_kb)
            writer = RecordingWriter(out, inst.cpus(), inst.page_size())
            start = time.monotonic_ns()
            inst.start()
            tasks = procinfo.snapshot([proc.pid])
            time.sleep(0.3)  # the workload's threads exist now
            for tid, info in procinfo.snapshot([proc.pid]).items():
                tasks.setdefault(tid, info)
            proc.wait(timeout=seconds + 30)
        finally:
            proc.kill()
            proc.wait()
        inst.stop()
        stop = time.monotonic_ns()
        text = inst.read_file("trace")
        reader = inst.page_reader()
        for cpu, page in reader.drain():
            writer.write_page(cpu, page)
        stats = {cpu: inst.stats(cpu).as_dict() for cpu in inst.cpus()}
        reader.close()
        writer.close()
        writer.write_formats(format_files(inst))
        writer.finish(RecordingMeta(start_ns=start, stop_ns=stop, page_size=writer.page_size,
                                    cpus=inst.cpus(), events=inst.events,
                                    pid_filter=[proc.pid], cpu_stats=stats,
                                    tasks={t: i.as_json() for t, i in tasks.items()}))
    (out / "trace.txt").write_text(text)
    return text


if __name__ == "__main__":
    capture(Path(sys.argv[1]), float(sys.argv[2]))
