"""The HTML report is one self-contained file that a real browser shows without errors."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from importlib import resources

import numpy as np
import pytest

from runstate.cli.main import main
from runstate.model.states import DomainState
from runstate.report.palette import DOMAIN_COLORS, rgb

pytest.importorskip("matplotlib")
mpimg = pytest.importorskip("matplotlib.image")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SAMPLE = str(resources.files("runstate") / "data" / "qemu-demo.rec")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--log-level=0", "--v=0"]


def _html(tmp_path, *args: str) -> str:
    out = tmp_path / "report.html"
    err = io.StringIO()
    assert main(["report", *args, "--format", "html", "-o", str(out)], stdout=io.StringIO(),
                stderr=err) == 0, err.getvalue()
    return out.read_text()


def test_report_is_self_contained_and_complete(tmp_path) -> None:
    text = _html(tmp_path, "--sample", "--interval", "500ms")
    assert not re.search(r"https?://|\bsrc=|@import|@font-face|<script|<link|<img", text)
    assert all(m == "url(#" for m in re.findall(r"url\(.?", text)), "url() other than #id"
    assert all(h.startswith(("#", "data:")) for h in re.findall(r'href="([^"]*)"', text))
    report = io.StringIO()
    assert main(["report", "--sample", "--format", "json"], stdout=report,
                stderr=io.StringIO()) == 0
    domain = json.loads(report.getvalue())["domains"][0]
    # the summary row carries the report's shares, one decimal
    for state, stats in domain["states"].items():
        assert f"{100 * stats['ns'] / domain['lifetime_ns']:.1f}" in text, state
    assert text.count("<svg") == 1 and "vcpu3" in text and "Intervals" in text
    for name in domain["members"]:
        assert (name.get("name") or name["member"]) in text


def _chromium(tmp_path, page, *extra: str) -> tuple[str, list[str]]:
    """Run headless Chromium on ``page``; its log and the URLs the page itself requested."""
    profile = tmp_path / "profile"
    netlog = tmp_path / "net.json"
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                          f"--log-net-log={netlog}", *extra, page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    events = json.loads(netlog.read_text())["events"]
    # requests made for the page carry its (file://) isolation key; the browser's own
    # background requests carry other keys
    page_urls = sorted({e["params"]["url"] for e in events
                        if "file://" in e.get("params", {}).get("network_isolation_key", "")
                        and "url" in e.get("params", {})})
    shutil.rmtree(profile, ignore_errors=True)
    return run.stderr, page_urls


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_chromium_shows_the_report_without_errors_or_requests(tmp_path) -> None:
    # the checks themselves catch a bad page: console errors and a request are seen
    bad = tmp_path / "bad.html"
    bad.write_text('<script>console.error("boom")</script><img src="http://example.invalid/x">')
    log, urls = _chromium(tmp_path, bad, "--dump-dom")
    assert "CONSOLE" in log and urls == ["http://example.invalid/x"]

    page = tmp_path / "report.html"
    page.write_text(_html(tmp_path, "--sample", "--interval", "250ms"))
    shot = tmp_path / "shot.png"
    log, urls = _chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,1600")
    assert "CONSOLE" not in log, log
    assert urls == []
    image = (mpimg.imread(str(shot))[:, :, :3] * 255).round().astype(int)
    assert image.shape[:2] == (1600, 1280)
    # the states of the sample are on screen in the palette's colours
    for state in (DomainState.CONCURRENCY_HAZARD, DomainState.PARTIAL_RUN, DomainState.BLOCKED):
        near = np.abs(image - np.array(rgb(DOMAIN_COLORS[state]))).max(axis=2) <= 3
        assert near.sum() > 2000, state
