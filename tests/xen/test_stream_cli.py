"""``runstate report -`` on a xentrace pipe prints each interval before the input ends."""

from __future__ import annotations

import select
import subprocess
import sys
import time

from runstate.sources.xentrace.synth import SynthConfig, generate
from tests.xen.helpers import trace_bytes


def test_intervals_appear_while_the_pipe_is_still_open():
    scenario = generate(11, SynthConfig(n_pcpus=4, steps=20_000, gap=48_000))  # ~0.4 s
    data = trace_bytes(scenario)
    with subprocess.Popen(
        [sys.executable, "-m", "runstate", "report", "-", "--interval", "20ms", "--cpu-hz",
         str(int(scenario.cpu_hz)), "--format", "csv"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        lines, rest, err = _feed_in_two_parts(proc, data)
    assert proc.returncode == 0, err
    rows = [line for line in (b"".join(lines) + rest).decode().splitlines()
            if line.startswith("interval,")]
    starts = sorted({int(r.split(",")[1]) for r in rows})
    assert len(starts) >= 15
    assert all(b - a == 20_000_000 for a, b in zip(starts, starts[1:], strict=False))


def _feed_in_two_parts(proc: subprocess.Popen[bytes],
                       data: bytes) -> tuple[list[bytes], bytes, bytes]:
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(data[: len(data) * 3 // 4])
        proc.stdin.flush()
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                line.startswith(b"interval,") for line in lines):
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                lines.append(proc.stdout.readline())
        assert any(line.startswith(b"interval,") for line in lines), \
            "no interval printed while the input was still open"
        proc.stdin.write(data[len(data) * 3 // 4:])
        proc.stdin.close()
        rest = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait(timeout=30)
    except BaseException:
        proc.kill()
        raise
    return lines, rest, err
