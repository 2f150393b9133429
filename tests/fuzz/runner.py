"""Run one mutant in a forked child under memory and time limits, and judge it.

The child sets an address-space limit (RLIMIT_AS) on top of what it inherited,
runs ``runstate report`` in-process and reports back through a pipe; the
parent kills it past the time limit.  A mutant passes if the report is valid
JSON whose domains' seven state times add up to their lifetimes, or the run
ends with exit 1 and exactly one ``runstate: error: FILE: ...`` line; and if
its peak memory (the child's VmHWM over its resident size at the start) stays
within what the input's size explains.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

# imported before any fork, so that each child starts with everything loaded
import runstate.analysis.pipeline
import runstate.analysis.xenalyze
import runstate.report.json_out  # noqa: F401
from runstate.cli.main import main
from tests.fuzz.corpus import Seed
from tests.fuzz.mutate import Edit, apply

main(["formats"], stdout=io.StringIO(), stderr=io.StringIO())  # loads the subcommands too

#: address space a run may add to what it inherits
AS_LIMIT = 1 << 30
#: a run may not take longer (seconds); generous for a loaded CI machine and ASan
TIME_LIMIT = 30.0
#: peak memory a run may add beyond the parent's, whatever the input
MEMORY_FLOOR = 200 << 20
#: and per byte of input (reading, decoding and indexing a file costs a few times its size)
MEMORY_PER_BYTE = 40


@dataclass(frozen=True, slots=True)
class Mutant:
    """A seed, the file in it to edit ("" for a single-file seed), edits, report options."""

    reader: str
    seed: str
    target: str
    edits: tuple[Edit, ...]
    options: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"reader": self.reader, "seed": self.seed, "target": self.target,
                "options": list(self.options), "edits": [e.to_json() for e in self.edits]}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Mutant:
        edits = d["edits"]
        options = d["options"]
        assert isinstance(edits, list) and isinstance(options, list)
        return cls(str(d["reader"]), str(d["seed"]), str(d["target"]),
                   tuple(Edit.from_json(e) for e in edits), tuple(str(o) for o in options))


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    #: "ok", "crash", "hang", "memory", "exception", "bad-error", "bad-report"
    verdict: str
    detail: str
    seconds: float
    peak_growth: int


def _sanitized() -> bool:
    """ASan reserves terabytes of address space: no RLIMIT_AS under it."""
    return "asan" in os.environ.get("LD_PRELOAD", "")


def materialize(mutant: Mutant, seed: Seed, workdir: Path) -> tuple[Path, int]:
    """Write the mutant under ``workdir``: its path and its size in bytes."""
    pristine = seed.materialize(workdir / "seeds")
    out = workdir / "mutant"
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    if pristine.is_dir():
        shutil.copytree(pristine, out)
        target = out / mutant.target
        target.write_bytes(apply(target.read_bytes(), list(mutant.edits)))
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    else:
        out.write_bytes(apply(pristine.read_bytes(), list(mutant.edits)))
        size = out.stat().st_size
    return out, size


def judge(code: int, stdout: str, stderr: str, path: str) -> tuple[str, str]:
    """Verdict on one finished run of ``runstate report --format json``."""
    if "MemoryError" in stderr:
        return "memory", stderr[-500:]
    if "Traceback" in stderr or "internal error" in stderr:
        return "exception", stderr[-2000:]
    if code in (1, 2):  # 2: a usage refusal the file's content decides (an --interval
        # that would make more intervals than anyone can read), named like any error
        errors = [line for line in stderr.splitlines() if "error:" in line]
        if len(errors) != 1 or not errors[0].startswith("runstate: error: ") \
                or path not in errors[0]:
            return "bad-error", stderr[-1000:]
        return "ok", errors[0]
    if code != 0:
        return "bad-error", f"exit {code}: {stderr[-1000:]}"
    try:
        report = json.loads(stdout)
    except ValueError as err:
        return "bad-report", f"output is not JSON: {err}"
    if report.get("semantics") == "xenalyze":
        return _judge_xenalyze(report)
    for dom in report.get("domains", []):
        total = sum(s["ns"] for s in dom["states"].values())
        negative = [k for k, s in dom["states"].items() if s["ns"] < 0]
        if total != dom["lifetime_ns"] or negative:
            return "bad-report", (f"domain {dom['domain']}: states add up to {total} ns, "
                                  f"lifetime {dom['lifetime_ns']} ns, negative {negative}")
    return "ok", ""


def _judge_xenalyze(report: dict[str, object]) -> tuple[str, str]:
    """xenalyze's figures: cycles and counts, none negative."""
    domains = report.get("domains", [])
    assert isinstance(domains, list)
    for dom in domains:
        bad = [k for k, s in dom["states"].items() if s["cycles"] < 0 or s["count"] < 0]
        if bad:
            return "bad-report", f"domain {dom['domain']}: negative figures in {bad}"
    return "ok", ""


def _child(path: Path, options: tuple[str, ...], reader: str, wfd: int) -> None:
    start_rss = _status_kb("VmRSS")
    if not _sanitized():
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        vsize = _status_kb("VmSize") * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vsize + AS_LIMIT, hard))
    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(["report", str(path), "--format", "json", "--input-format", reader,
                     *options], stdout=out, stderr=err)
    except MemoryError:
        code, err = 1, io.StringIO("MemoryError")
    verdict, detail = judge(code, out.getvalue(), err.getvalue(), str(path))
    growth = max(0, _status_kb("VmHWM") - start_rss) * 1024
    os.write(wfd, json.dumps([verdict, detail[:50_000], growth]).encode())


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def run_mutant(mutant: Mutant, seed: Seed, workdir: Path,
               time_limit: float = TIME_LIMIT) -> Outcome:
    """Run one mutant in a forked child and judge it."""
    path, size = materialize(mutant, seed, workdir)
    rfd, wfd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(rfd)
            _child(path, mutant.options, mutant.reader, wfd)
        except BaseException as err:  # noqa: BLE001 - anything is a finding
            os.write(wfd, json.dumps(["exception", repr(err)[:2000]]).encode())
            code = 3
        os._exit(code)
    os.close(wfd)
    status, hung = _wait(pid, start, time_limit)
    seconds = time.monotonic() - start
    with os.fdopen(rfd, "rb") as f:
        raw = f.read()
    if hung:
        return Outcome(False, "hang", f"killed after {time_limit:.0f} s", seconds, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return Outcome(False, "crash", f"killed by {sig}", seconds, 0)
    if not raw:
        return Outcome(False, "crash", f"child exited {os.WEXITSTATUS(status)} silently",
                       seconds, 0)
    verdict, detail, *rest = json.loads(raw)
    growth = int(rest[0]) if rest else 0
    allowed = MEMORY_FLOOR + MEMORY_PER_BYTE * size
    if verdict == "ok" and growth > allowed and not _sanitized():
        verdict, detail = "memory", (f"peak memory grew by {growth >> 20} MiB for a "
                                     f"{size} byte input (allowed {allowed >> 20} MiB)")
    return Outcome(verdict == "ok", verdict, detail, seconds, growth)


def _wait(pid: int, start: float, limit: float) -> tuple[int, bool]:
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if time.monotonic() - start > limit:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return status, True
        time.sleep(delay)
        delay = min(0.05, delay * 2)
