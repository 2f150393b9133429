"""The small QEMU test guest the live tests boot (``scripts/guest/build.sh``).

One place says where it lives (``RUNSTATE_GUEST_DIR``, default
``~/.cache/runstate-guest``), how it is built when missing, and how a test
waits for the guest's console to say something.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUEST_DIR = Path(os.environ.get("RUNSTATE_GUEST_DIR",
                                Path.home() / ".cache" / "runstate-guest"))


def guest_files(*tools: str) -> Path:
    """The guest's kernel and initramfs directory, built if missing; skips the test
    without root, without one of ``tools`` (and QEMU), or when the build fails."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("qemu-system-x86_64", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    if not (GUEST_DIR / "vmlinuz").exists() or not (GUEST_DIR / "initramfs.cpio.gz").exists():
        build = subprocess.run(["bash", str(ROOT / "scripts" / "guest" / "build.sh"),
                                str(GUEST_DIR)], capture_output=True, text=True)
        if build.returncode != 0:
            pytest.skip(f"cannot build the guest: {build.stderr.strip()[-200:]}")
    return GUEST_DIR


def wait_for(console: Path, text: str, timeout_s: float, poll_s: float = 0.02) -> None:
    """Wait until the guest's serial console file holds ``text``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if console.exists() and text in console.read_text(errors="replace"):
            return
        time.sleep(poll_s)
    raise AssertionError(f"guest did not print {text!r} in {timeout_s} s")
