"""What a newcomer meets first: the formats list, hints when a grouping finds nothing,
duration help, and an install that does not pull in the test tools."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from runstate.sources.registry import reader_names
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]


def test_formats_are_listed_aligned_in_detection_order(run_cli):
    result = run_cli("formats")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["format", "reads"]
    assert [line.split()[0] for line in lines[1:]] == reader_names()
    # every description starts in the same column, past the longest name
    starts = {re.match(r"\S+\s+", line).end() for line in lines}
    assert starts == {max(len(n) for n in reader_names()) + 2}


def test_no_vm_found_says_how_to_see_processes(run_cli):
    trace = str(DATA / "linux" / "busy4.perf-script-pid.txt")
    result = run_cli("report", trace, "--group", "vm")
    assert result.code == 0, result.err
    assert "no VM" in result.out and "--group process" in result.out
    # and the hint is right: processes are there
    processes = run_cli("report", trace, "--group", "process", "--all-rows")
    assert "rs_load[" in processes.out


def test_the_users_install_has_no_test_tools():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tools = {"pytest", "hypothesis", "mypy", "ruff"}

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0] for r in requirements}

    extras = project["optional-dependencies"]
    assert not names(project["dependencies"]) & tools
    assert not names(extras["all"]) & tools
    assert {"pytest", "hypothesis"} <= names(extras["test"])
    assert {"mypy", "ruff"} <= names(extras["dev"])
    assert "runstate[all,test]" in extras["dev"]
    # CI installs the user's set first (the Quick start), then the tools
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("pip install -q '.[all]'") < ci.index("pip install -q '.[dev]'")
