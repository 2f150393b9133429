"""The generic CSV / JSON Lines reader: detection, parsing, one-line errors with line numbers."""

from __future__ import annotations

import json

import pytest

from runstate.analysis.pipeline import analyze
from runstate.errors import InputError, UnknownFormat
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source

HEADER = "time_ns,domain,member,old_state,new_state\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _result(path, **opts):
    return analyze(open_source(path, ReadOptions(**opts)))


def test_csv_and_jsonl_give_the_same_result(tmp_path):
    rows = [(10, "a", "0", "running", "blocked"), (20, "a", "1", "runnable", "running"),
            (30, "a", "0", "blocked", "runnable")]
    csv_path = _write(tmp_path, "e.csv", HEADER + "".join(f"{t},{d},{m},{o},{n}\n"
                                                          for t, d, m, o, n in rows))
    jsonl_path = _write(tmp_path, "e.jsonl", "".join(json.dumps(dict(
        time_ns=t, domain=d, member=m, old_state=o, new_state=n)) + "\n"
        for t, d, m, o, n in rows))
    a, b = _result(csv_path), _result(jsonl_path)
    assert a.domains[0].states == b.domains[0].states
    assert open_source(jsonl_path, ReadOptions()).info.format == "jsonl"


def test_chunk_size_does_not_change_the_result(tmp_path):
    text = HEADER + "".join(f"{t},d{t % 3},{t % 5},{['running', 'blocked'][(t // 15) % 2]},"
                            f"{['blocked', 'running'][(t // 15) % 2]}\n" for t in range(0, 3000, 1))
    path = _write(tmp_path, "e.csv", text)
    whole = _result(path)
    chunked = _result(path, chunk_rows=7)
    assert whole.domains == chunked.domains


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("time,domain\n1,2\n", 1, "bad header"),
    (HEADER + "10,a,0,running,sleeping\n", 2, "unknown state 'sleeping'"),
    (HEADER + "10,a,0,running,running\n", 2, "changes to the state it is in"),
    (HEADER + "10,a,0,running,blocked\n5,a,1,running,blocked\n", 3, "time goes backwards"),
    (HEADER + "ten,a,0,running,blocked\n", 2, "not an integer"),
    (HEADER + "10,a,0,running\n", 2, "expected 5 fields"),
    (HEADER + "10,,,running,blocked\n", 2, "must mark lost data"),
    (HEADER + "10,a,,running,blocked\n", 2, "must both be given"),
])
def test_bad_csv_names_the_line(tmp_path, text, line, reason):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(InputError) as info:
        _result(path, chunk_rows=1)
    assert info.value.line == line
    assert reason in str(info.value)
    assert str(info.value).startswith(path + f":{line}")


def test_bad_jsonl_names_the_line(tmp_path):
    good = json.dumps(dict(time_ns=1, domain="a", member="0", old_state="running",
                           new_state="blocked"))
    path = _write(tmp_path, "bad.jsonl", good + "\n{not json\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        _result(path, chunk_rows=1)


def test_unknown_format_lists_known_formats(tmp_path):
    path = _write(tmp_path, "x.bin", "\x00\x01garbage")
    with pytest.raises(UnknownFormat, match="unknown input format .*csv"):
        open_source(path, ReadOptions())


def test_equal_timestamps_within_a_member_are_counted(tmp_path):
    path = _write(tmp_path, "e.csv", HEADER + "10,a,0,blocked,runnable\n"
                  "10,a,0,runnable,running\n20,a,0,running,blocked\n")
    result = _result(path)
    assert result.anomalies["equal_timestamps_within_member"] == 1
    assert result.domains[0].lifetime_ticks == 10
