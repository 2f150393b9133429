"""A real QEMU guest, recorded with ``runstate record --vm`` and reported per phase.

The guest (``scripts/guest/build.sh``: Debian's kernel + a busybox initramfs)
has 4 vCPUs on this 2-core host and runs, from its kernel command line,
P1 s of 4 CPU burners, P2 s of one burner, P3 s idle, then powers off.
Expected, per phase: 4 busy vCPUs on 2 cores -> some run while others wait
(concurrency_hazard); one burner -> one vCPU runs, the rest idle
(partial_run); idle -> blocked.  Needs root, tracefs and qemu-system-x86_64;
the guest is built once into RUNSTATE_GUEST_DIR (default ~/.cache/runstate-guest).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runstate.errors import EnvironmentProblem
from runstate.live.tracefs import find_tracefs, list_instances
from tests.guest import guest_files, wait_for

P1, P2, P3 = 4, 3, 3
NAME = "rstest"

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def guest() -> Path:
    files = guest_files()
    try:
        find_tracefs().release()
    except EnvironmentProblem as err:
        pytest.skip(f"no tracefs: {err}")
    return files


def _boot(files: Path, console: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["qemu-system-x86_64", "-name", f"guest={NAME},debug-threads=on", "-machine", "q35",
         "-accel", "tcg,thread=multi", "-smp", "4", "-m", "256",
         "-kernel", str(files / "vmlinuz"), "-initrd", str(files / "initramfs.cpio.gz"),
         "-append", f"console=ttyS0 quiet p1={P1} p2={P2} p3={P3}",
         "-display", "none", "-serial", f"file:{console}", "-monitor", "none",
         "-no-reboot", "-nic", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def recorded(guest: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("vm")
    console, rec = work / "console.log", work / "guest.rec"
    qemu = _boot(guest, console)
    try:
        wait_for(console, "GUEST: booted", 90, poll_s=0.2)
        subprocess.run([sys.executable, "-m", "runstate", "record", "--vm", NAME,
                        "--duration", str(P1 + P2 + P3 + 2), "-o", str(rec)],
                       check=True, capture_output=True, timeout=60)
        qemu.wait(timeout=30)
    finally:
        qemu.kill()
        qemu.wait()
    out = subprocess.run([sys.executable, "-m", "runstate", "report", str(rec),
                          "--format", "json", "--interval", "1s"],
                         check=True, capture_output=True, text=True)
    return {"report": json.loads(out.stdout), "console": console.read_text()}


def _dominant(states: dict) -> str:
    return max(states, key=lambda s: states[s]["ns"])


def test_the_guest_is_one_vm_of_four_vcpus_named_from_its_command_line(recorded):
    (vm,) = recorded["report"]["domains"]
    assert vm["name"] == NAME
    assert vm["members_seen"] == 4
    assert sorted(m["name"] for m in vm["members"]) == ["vcpu0", "vcpu1", "vcpu2", "vcpu3"]
    assert "GUEST: done" in recorded["console"]


def test_each_phase_has_the_expected_dominant_state(recorded):
    doc = recorded["report"]
    per_second = [_dominant(i["domains"][0]["states"]) for i in doc["intervals"]
                  if i["domains"] and sum(s["ns"] for s in i["domains"][0]["states"].values())
                  > 900_000_000]
    # the phases follow each other in this order; 1 s intervals straddle the edges
    phases = [s for i, s in enumerate(per_second) if i == 0 or s != per_second[i - 1]]
    assert phases[0] == "concurrency_hazard", per_second
    assert "partial_run" in phases, per_second
    assert phases[-1] == "blocked", per_second
    assert phases.index("partial_run") < len(phases) - 1
    assert per_second.count("concurrency_hazard") >= P1 - 1


def test_conservation_and_no_tracefs_leftovers(recorded):
    doc = recorded["report"]
    vm = doc["domains"][0]
    # the VM lives while a vCPU thread does: between the longest vCPU's own time and
    # all vCPUs' time together, within the window
    vcpus = [sum(s["ns"] for s in m["states"].values()) for m in vm["members"]]
    assert vcpus, "the report lists no vCPU"
    assert max(vcpus) <= vm["lifetime_ns"] <= min(doc["window"]["duration_ns"], sum(vcpus))
    fs = find_tracefs()
    try:
        assert not list_instances(fs)
    finally:
        fs.release()
