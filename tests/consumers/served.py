"""Start ``runstate serve`` as its own process and scrape it, for the live tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.consumers.conftest import favour

STARTUP_S = 60  # imports and BPF loading take a while on a loaded 2-core machine


@dataclass
class Served:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> dict[str, dict[tuple, float]]:
        with urllib.request.urlopen(self.url, timeout=60) as response:
            body = response.read().decode()
        samples: dict[str, dict[tuple, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
        return samples

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit code and the rest of stderr (killed, and an error, if it does
        not end within a minute)."""
        self.proc.terminate()
        try:
            _, rest = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError("runstate serve did not end within 60 s of SIGTERM") from None
        return self.proc.returncode, rest


def start_serve(*args: str) -> Served:
    proc = subprocess.Popen([sys.executable, "-m", "runstate", "serve", "--listen",
                             "127.0.0.1:0", *args], stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: os.nice(-20))
    favour(proc.pid)  # its snapshots must be taken when scraped, not seconds later
    assert proc.stderr is not None
    deadline = time.monotonic() + STARTUP_S
    line = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", line)
        if match:
            return Served(proc, int(match.group(1)))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"runstate serve did not start: {line!r} (exit {proc.wait()})")


def domain_seconds(samples: dict[str, dict[tuple, float]], domain: str) -> dict[str, float]:
    """state -> seconds of one domain."""
    return {dict(k)["state"]: v
            for k, v in samples["runstate_domain_state_seconds_total"].items()
            if dict(k)["domain"] == domain}


def tracefs_instances_of(pid: int) -> list[str]:
    root = Path("/sys/kernel/tracing/instances")
    if not root.is_dir():
        return []
    return [n for n in os.listdir(root) if n.startswith(f"runstate_{pid}_")]
