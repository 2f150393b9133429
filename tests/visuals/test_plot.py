"""Plots decode, have the palette's colours where the states are, and scale to many domains."""

from __future__ import annotations

import io
import json
import random
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from runstate.cli.main import main
from runstate.model.states import DomainState
from runstate.report.palette import DOMAIN_COLORS, rgb

mpimg = pytest.importorskip("matplotlib.image")

S = 1_000_000_000


def _write_csv(path, rows) -> str:
    lines = ["time_ns,domain,member,old_state,new_state,domain_name"]
    lines += [",".join(str(x) for x in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _plot(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    code = main(["plot", *args], stdout=io.StringIO(), stderr=err)
    return code, err.getvalue()


def _two_phase(tmp_path) -> str:
    """One VM, two vCPUs: full_run for 4 s, then full_contention for 6 s."""
    return _write_csv(tmp_path / "phases.csv", [
        (0, 1, 0, "blocked", "running", "vm"), (0, 1, 1, "blocked", "running", "vm"),
        (4 * S, 1, 0, "running", "runnable", "vm"), (4 * S, 1, 1, "running", "runnable", "vm"),
        (10 * S, 1, 0, "runnable", "blocked", "vm"), (10 * S, 1, 1, "runnable", "blocked", "vm"),
    ])


def _runs(row: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """Columns of one pixel row whose colour is ``color`` (within a rounding step)."""
    pixels = (row[:, :3] * 255).round().astype(int)
    return np.flatnonzero(np.abs(pixels - np.array(color)).max(axis=1) <= 2)


def test_strip_colours_switch_at_the_state_change(tmp_path) -> None:
    out = tmp_path / "p.png"
    code, err = _plot([_two_phase(tmp_path), "-o", str(out), "--interval", "1s"])
    assert code == 0, err
    image = mpimg.imread(str(out))
    assert image.shape[1] > 800 and image.shape[0] > 300
    run, cont = rgb(DOMAIN_COLORS[DomainState.FULL_RUN]), \
        rgb(DOMAIN_COLORS[DomainState.FULL_CONTENTION])
    checked = 0
    for row in image:
        blue, red = _runs(row, run), _runs(row, cont)
        if blue.size < 100 or red.size < 100 or blue.max() > red.min():
            continue
        # the plotted span is 0..10 s; the change at 4 s sits at 40 % of it
        fraction = (red.min() - blue.min()) / (red.max() + 1 - blue.min())
        assert abs(fraction - 0.4) < 0.01, fraction
        checked += 1
    assert checked > 20, "no pixel row shows both states side by side"


def _many_domains(tmp_path, n: int) -> str:
    rng = random.Random(7)
    states = ["running", "runnable", "blocked"]
    rows = []
    current = {}
    for d in range(1, n + 1):
        for m in range(2):
            current[(d, m)] = "blocked"
    t = 0
    for _ in range(4000):
        t += rng.randint(1, 5_000_000)
        d, m = rng.randint(1, n), rng.randint(0, 1)
        new = rng.choice([s for s in states if s != current[(d, m)]])
        rows.append((t, d, m, current[(d, m)], new, f"vm{d}"))
        current[(d, m)] = new
    return _write_csv(tmp_path / "many.csv", rows)


@pytest.mark.parametrize("suffix", ["png", "svg"])
@pytest.mark.parametrize("n", [1, 50])
def test_plots_of_one_and_fifty_domains_decode(tmp_path, suffix: str, n: int) -> None:
    out = tmp_path / f"p.{suffix}"
    code, err = _plot([_many_domains(tmp_path, n), "-o", str(out)])
    assert code == 0, err
    assert f"({n} domain{'s' if n > 1 else ''})" in err
    if suffix == "png":
        image = mpimg.imread(str(out))
        height, width = image.shape[:2]
        assert 800 <= width <= 2500 and 300 <= height <= 12000
        # more domains, a taller picture; and it is not blank
        rgb8 = (image[::4, ::4, :3] * 255).astype(np.uint32)
        packed = rgb8[..., 0] << 16 | rgb8[..., 1] << 8 | rgb8[..., 2]
        assert np.unique(packed).size > 10
    else:
        root = ET.parse(out).getroot()
        assert root.tag.endswith("svg")
        text = out.read_text()
        assert sum(f"vm{d} [" in text for d in range(1, n + 1)) == n  # every panel titled


def test_top_keeps_the_most_contended_domains(tmp_path) -> None:
    path = _many_domains(tmp_path, 12)
    report = io.StringIO()
    assert main(["report", path, "--format", "json"], stdout=report, stderr=io.StringIO()) == 0
    domains = json.loads(report.getvalue())["domains"]
    contention = {d["name"]: sum(d["states"][s]["ns"] for s in (
        "full_contention", "concurrency_hazard", "partial_contention")) for d in domains}
    want = sorted(contention, key=lambda k: -contention[k])[:3]
    out = tmp_path / "top.svg"
    code, err = _plot([path, "-o", str(out), "--top", "3"])
    assert code == 0, err
    text = out.read_text()
    shown = [name for name in contention if f"{name} [" in text]
    assert sorted(shown) == sorted(want)


def test_bad_output_name_and_missing_matplotlib(tmp_path, monkeypatch) -> None:
    path = _two_phase(tmp_path)
    code, err = _plot([path, "-o", str(tmp_path / "p.gif")])
    assert code == 2 and "must end in .png" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, err = _plot([path, "-o", str(tmp_path / "p.png")])
    assert code == 1 and "pip install 'runstate[plot]'" in err
    assert "Traceback" not in err and not (tmp_path / "p.png").exists()
