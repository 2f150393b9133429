"""Pieces of the command line kept light for start-up: the terminal's width without
shutil, the reader options as plain records, and which commands may end without the
interpreter's teardown."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from runstate.cli import main as cli_main
from runstate.cli.terminal import HelpFormatter, terminal_columns
from runstate.sources.options import FormatInfo, ReadOptions

#: prints terminal_columns() and shutil's figure for the same environment, as JSON
COLUMNS_PROBE = """
import json, shutil
from runstate.cli.terminal import terminal_columns
print(json.dumps([terminal_columns(77), shutil.get_terminal_size((77, 24)).columns]))
"""


@pytest.mark.parametrize("columns", [None, "123", "0", "-5", "wide"])
def test_terminal_columns_agree_with_shutil(columns):
    # stdout is a pipe here, so without a valid COLUMNS both fall back
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    out = subprocess.run([sys.executable, "-c", COLUMNS_PROBE], env=env,
                         capture_output=True, text=True, check=True).stdout
    ours, theirs = json.loads(out)
    assert ours == theirs
    assert ours == (123 if columns == "123" else 77)


def test_help_formatter_wraps_at_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    assert terminal_columns() == 50
    parser = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    parser.add_argument("--option", help="word " * 30)
    lines = parser.format_help().splitlines()
    assert max(len(line) for line in lines) <= 48  # argparse's own: 2 columns less
    monkeypatch.setenv("COLUMNS", "200")
    assert max(len(line) for line in parser.format_help().splitlines()) > 100


def test_read_options_compare_as_records():
    a = ReadOptions(cpu_hz=2.4e9, lenient=True)
    assert a == ReadOptions(cpu_hz=2.4e9, lenient=True)
    assert a != ReadOptions(cpu_hz=2.4e9)
    assert a != "ReadOptions"
    assert repr(a) == ("ReadOptions(cpu_hz=2400000000.0, group=None, strict=False, "
                       "lenient=True, chunk_rows=262144)")
    with pytest.raises(TypeError):
        hash(a)  # mutable: no hash, as a plain dataclass
    info = FormatInfo("x", "an x", 5)
    assert {info: 1}[FormatInfo("x", "an x", 5)] == 1
    assert info != FormatInfo("x", "an x", 6)


def subcommand_defaults(name: str) -> dict[str, object]:
    """The defaults the subcommand ``name`` sets on its parser."""
    parser = cli_main.build_parser(name)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices[name]._defaults)


OFFLINE = {"report", "convert", "formats", "export", "plot"}


@pytest.mark.parametrize("name", [name for name, _, _ in cli_main.COMMANDS])
def test_only_offline_commands_may_skip_the_teardown(name):
    # live commands (tracing, servers, threads, host clean-up) end the normal way
    assert bool(subcommand_defaults(name).get("quick_exit")) == (name in OFFLINE)
