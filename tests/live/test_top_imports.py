"""``runstate top --help`` starts like any other command's help: no numpy.

The live sources and the record writers need numpy; the options (the sources
offered among them) do not, so they are loaded only when top runs.
"""

from __future__ import annotations

from tests.core.test_imports import loaded, probe


def test_top_help_loads_the_command_and_no_numpy() -> None:
    result = probe("top", "--help")
    assert result["code"] == 0
    assert loaded(result, "runstate.cli.top_cmd")
    assert "{auto,bpf,tracefs}" in result["out"]
    assert not loaded(result, "numpy")
    assert not loaded(result, "runstate.live.monitor")
