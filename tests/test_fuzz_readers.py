"""Mutated inputs of every format: a result or a one-line error, never a crash or a hang."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from runstate.cli.main import main
from tests.conftest import DATA, SHARED

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = {
    "perf-data": DATA / "linux" / "busy4.perf.data",
    "perf-script": DATA / "linux" / "busy4.perf-script.txt",
    "ftrace-text": DATA / "linux" / "sleepy2.ftrace.txt",
    "xentrace": SHARED / "testdata" / "xen" / "c07_offline.trace",
    "csv": ROOT / "src" / "runstate" / "data" / "sample.csv",
}


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.choice(("flip", "truncate", "splice"))
    if kind == "flip":
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == "truncate":
        del b[rng.randrange(len(b)):]
    else:
        i, j = rng.randrange(len(b)), rng.randrange(len(b))
        b[i:i] = b[j:j + rng.randint(1, 400)]
    return bytes(b)


@pytest.mark.parametrize("fmt", sorted(FIXTURES))
def test_mutated_files_give_a_result_or_one_line_error(fmt, tmp_path):
    source = FIXTURES[fmt]
    if not source.exists():
        pytest.skip(f"fixture {source} not found")
    data = source.read_bytes()
    rng = random.Random(fmt)
    for trial in range(25):
        path = tmp_path / f"m{trial}"
        path.write_bytes(_mutate(data, rng))
        for extra in ([], ["--input-format", fmt]):
            out, err = io.StringIO(), io.StringIO()
            code = main(["report", str(path), "--format", "json", *extra], stdout=out,
                        stderr=err)
            message = err.getvalue()
            assert code in (0, 1), message
            assert "internal error" not in message and "Traceback" not in message, message
            if code == 1:
                errors = [line for line in message.splitlines() if "error:" in line]
                assert len(errors) == 1 and str(path) in errors[0], message
