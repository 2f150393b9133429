"""Shared fixtures: paths, the in-process CLI runner, the --update-golden option."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from runstate.cli.main import main

TESTS = Path(__file__).parent
DATA = TESTS / "data"
GOLDEN = TESTS / "golden"
#: Xen test vectors with their ground truth and xenalyze outputs (see its README)
XEN_DATA = DATA / "xen"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from the current output")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli():
    def run(*argv: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), stdout=out, stderr=err)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.write_text(text)
            return
        assert path.exists(), (f"golden file {path} is missing; create it with "
                               "`python -m pytest tests/core --update-golden`")
        assert text == path.read_text(), (f"output differs from {path}; if the change is "
                                           "intended, rerun with --update-golden")

    return check


def _pseudo_mounts() -> set[str]:
    """Mount points of tracefs and debugfs (perf mounts them as a side effect)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] in ("tracefs", "debugfs"):
            found.add(fields[0].split()[4])
    return found


@pytest.fixture(scope="session", autouse=True)
def leave_pseudo_filesystems_as_found():
    """Tests that run perf must not leave tracefs or debugfs mounted on the host."""
    before = _pseudo_mounts()
    yield
    import subprocess

    for mount_point in sorted(_pseudo_mounts() - before, key=len, reverse=True):
        subprocess.run(["umount", mount_point], capture_output=True, check=False)
