"""A real QEMU guest watched live with ``runstate top --vm NAME --batch``.

The guest (scripts/guest/build.sh) has 4 vCPUs on this 2-core host and runs P1 s
of 4 CPU burners, P2 s of one burner, P3 s idle.  Its console marks each phase;
the test stamps the markers on the host's monotonic clock as they appear and
checks the dominant state of the intervals inside each phase, for both live
sources at once: concurrency_hazard, partial_run, blocked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runstate.live import procinfo
from runstate.live.bpf.loader import missing_requirement
from tests.live.live_workloads import need_root, raised_priority

pytestmark = [pytest.mark.live, pytest.mark.slow]
GUEST_DIR = Path(os.environ.get("RUNSTATE_GUEST_DIR",
                                Path.home() / ".cache" / "runstate-guest"))
NAME = "rstopvm"
P1, P2, P3 = 5, 4, 4
PHASES = (("phase1", "concurrency_hazard"), ("phase2", "partial_run"),
          ("phase3", "blocked"))
#: ignore this much of each phase's edges (the guest's own switching, interval edges)
EDGE_NS = 600_000_000


def _boot(console: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["qemu-system-x86_64", "-name", f"guest={NAME},debug-threads=on", "-machine", "q35",
         "-accel", "tcg,thread=multi", "-smp", "4", "-m", "256",
         "-kernel", str(GUEST_DIR / "vmlinuz"), "-initrd", str(GUEST_DIR / "initramfs.cpio.gz"),
         "-append", f"console=ttyS0 quiet p1={P1} p2={P2} p3={P3}", "-display", "none",
         "-serial", f"file:{console}", "-monitor", "none", "-no-reboot", "-nic", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stamp_markers(console: Path, qemu: subprocess.Popen[bytes], stamps: dict[str, int]
                   ) -> None:
    """Record when each 'GUEST: <marker>' line appears on the console."""
    while qemu.poll() is None:
        text = console.read_text(errors="replace") if console.exists() else ""
        for marker in ("phase1", "phase2", "phase3", "done"):
            if f"GUEST: {marker}" in text and marker not in stamps:
                stamps[marker] = time.monotonic_ns()
        time.sleep(0.02)


def _read_records(proc: subprocess.Popen[str], out: list[dict[str, object]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(json.loads(line))


def test_guest_phases_seen_live(tmp_path: Path) -> None:
    need_root()
    if shutil.which("qemu-system-x86_64") is None or not (GUEST_DIR / "vmlinuz").exists():
        pytest.skip("needs qemu-system-x86_64 and the test guest (scripts/guest/build.sh)")
    sources = ["tracefs"] + ([] if missing_requirement() else ["bpf"])
    console = tmp_path / "console.log"
    stamps: dict[str, int] = {}
    records: dict[str, list[dict[str, object]]] = {s: [] for s in sources}
    with raised_priority():  # the guest and both tops: other load barely matters
        codes = _watch_guest(console, sources, stamps, records)
    assert all(code == 0 for code in codes), codes
    assert {"phase1", "phase2", "phase3", "done"} <= stamps.keys(), console.read_text()
    bounds = [stamps["phase1"], stamps["phase2"], stamps["phase3"], stamps["done"]]
    for source in sources:
        for i, (_, expected) in enumerate(PHASES):
            ns = _phase_ns(records[source], bounds[i] + EDGE_NS, bounds[i + 1] - EDGE_NS)
            total = sum(ns.values())
            # the whole figures, unshortened, if an assertion fails
            seen = f"{source}, phase {i + 1}: " + ", ".join(f"{k} {v}" for k, v in ns.items())
            # the intervals inside the phase were seen (none missing)
            assert total > 0.5 * (bounds[i + 1] - bounds[i] - 2 * EDGE_NS), seen
            dominant = max(ns, key=lambda s: ns[s])
            assert dominant == expected, seen
            assert ns[expected] > 0.5 * total, seen


def _watch_guest(console: Path, sources: list[str], stamps: dict[str, int],
                 records: dict[str, list[dict[str, object]]]) -> list[int | None]:
    """Boot the guest and run one top per source until it powers off; their exit codes."""
    qemu = _boot(console)
    tops: dict[str, subprocess.Popen[str]] = {}
    readers: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 20
        while NAME not in procinfo.qemu_vms().values():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # vCPU threads started
        for source in sources:
            tops[source] = subprocess.Popen(
                [sys.executable, "-m", "runstate", "top", "--vm", NAME, "--batch",
                 "--source", source, "--interval", "250ms"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            readers.append(threading.Thread(target=_read_records,
                                            args=(tops[source], records[source])))
            readers[-1].start()
        _stamp_markers(console, qemu, stamps)
        qemu.wait(timeout=120)
    finally:
        qemu.kill()
        for top in tops.values():
            top.send_signal(signal.SIGTERM)
        for top in tops.values():
            top.wait(timeout=30)
        for reader in readers:
            reader.join()
        for top in tops.values():
            for pipe in (top.stdout, top.stderr):
                if pipe is not None:
                    pipe.close()
    return [top.returncode for top in tops.values()]


def _phase_ns(records: list[dict[str, object]], begin: int, end: int) -> dict[str, int]:
    """State ns of the guest's domain over the intervals lying inside [begin, end]."""
    total: dict[str, int] = {}
    for record in records:
        window = record["window"]
        assert isinstance(window, dict)
        if window["start_ns"] < begin or window["end_ns"] > end:
            continue
        domains = record["domains"]
        assert isinstance(domains, list)
        for d in domains:
            if d["name"] == NAME:
                assert d["members_seen"] == 4
                for state, value in d["states"].items():
                    total[state] = total.get(state, 0) + value["ns"]
    return total
