"""``runstate serve`` refuses what it cannot do before it touches the kernel."""

from __future__ import annotations

import sys

import pytest

from runstate.cli.serve_cmd import parse_listen
from runstate.errors import UsageError


def test_without_the_prometheus_extra_the_message_says_how_to_install(run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "runstate.export.prometheus", raising=False)
    result = run_cli("serve", "--pid", "1")
    assert result.code == 1 and result.err.count("\n") == 1
    assert "pip install 'runstate[prometheus]'" in result.err


@pytest.mark.parametrize("argv", [
    (), ("--pid", "1", "--all"), ("--pid", "1", "--listen", "9477"),
    ("--pid", "1", "--listen", "host:http"), ("--pid", "1", "--advice-window", "soon")])
def test_usage_errors_exit_2(run_cli, argv):
    result = run_cli("serve", *argv)
    assert result.code == 2 and result.err.startswith("runstate: error:"), result.err


def test_listen_defaults_to_loopback_and_takes_ipv6():
    from runstate.cli.serve_cmd import DEFAULT_LISTEN

    assert parse_listen(DEFAULT_LISTEN) == ("127.0.0.1", 9477)
    assert parse_listen("[::1]:9100") == ("::1", 9100)
    with pytest.raises(UsageError):
        parse_listen(":9477")
