"""What each command imports: start-up pays only for what the command uses.

Each case runs ``runstate.cli.main.main`` in a fresh interpreter and looks at
``sys.modules`` afterwards: ``--version`` and ``--help`` load no numpy and no
subcommand, a JSON or CSV report loads its own reader and no other format's,
no terminal library (rich) and no table renderer.  Each assertion can fail
both ways: the module that must be there is checked as well.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pytest

from runstate.cli import main as cli_main
from runstate.sources.registry import READERS
from tests.conftest import DATA, XEN_DATA

XEN_TRACE = XEN_DATA / "c01_basic.trace"
PERF_DATA = DATA / "linux" / "busy4.perf.data"
PERF_SCRIPT = DATA / "linux" / "busy4.perf-script-pid.txt"
TWO_VMS = DATA / "core" / "two_vms.csv"

#: runs main() with the arguments given as JSON; prints its outcome and sys.modules
PROBE = """
import io, json, sys
from runstate.cli.main import main
out, err = io.StringIO(), io.StringIO()
code = main(json.loads(sys.argv[1]), stdout=out, stderr=err)
print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                  "modules": sorted(sys.modules)}))
"""

#: the reader module of each format, as the registry names it
READER_MODULE = {r.FORMAT.name: r.reader.partition(":")[0] for r in READERS}
#: what a report written to a file or a pipe never needs
NEVER_IN_A_REPORT = ("rich", "runstate.report.table", "matplotlib", "prometheus_client",
                     "runstate.export.perfetto", "runstate.report.html")


#: as PROBE, the modules in the order they were first imported
PROBE_IN_ORDER = PROBE.replace("sorted(sys.modules)", "list(sys.modules)")


def probe(*argv: str, in_order: bool = False) -> dict[str, Any]:
    """main(argv) in a fresh interpreter: code, out, err and the imported modules."""
    proc = subprocess.run([sys.executable, "-c", PROBE_IN_ORDER if in_order else PROBE,
                           json.dumps(argv)],
                          capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def loaded(result: dict[str, Any], prefix: str) -> list[str]:
    """The modules named ``prefix`` or inside it."""
    return [m for m in result["modules"] if m == prefix or m.startswith(prefix + ".")]


def other_readers(result: dict[str, Any], own: set[str]) -> list[str]:
    return [m for name, m in READER_MODULE.items() if name not in own and loaded(result, m)]


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_load_no_numpy_and_no_subcommand(argv):
    result = probe(*argv)
    assert result["code"] == 0
    assert loaded(result, "runstate.cli.main")
    assert not loaded(result, "numpy")
    assert [m for m in result["modules"] if m.endswith("_cmd")] == []
    assert not loaded(result, "runstate.sources")


def test_version_is_the_installed_distribution():
    assert probe("--version")["out"] == f"runstate {version('runstate')}\n"


def listed_entry(help_text: str, name: str) -> str:
    """The lines of ``name`` in a --help's list of subcommands (its help may wrap)."""
    match = re.search(rf"^    {name} .*\n(?:^ {{8,}}\S.*\n)*", help_text, re.M)
    assert match is not None, name
    return match.group(0)


def test_help_lists_every_subcommand_as_its_module_describes_it():
    # --help lists every subcommand with the table's one-line help, and the parser with
    # one command's own module added (and the others left out) lists that command with
    # the same line: the table's one-line help is the module's
    plain = cli_main.build_parser().format_help()
    listed = re.findall(r"^    (\w+) ", plain, re.M)
    assert listed == [name for name, _, _ in cli_main.COMMANDS]
    for name, _, _ in cli_main.COMMANDS:
        chosen = cli_main.build_parser(name).format_help()
        assert re.findall(r"^    (\w+) ", chosen, re.M) == [name]
        assert listed_entry(chosen, name).split() == listed_entry(plain, name).split(), name


def test_xentrace_report_loads_the_xen_reader_and_nothing_of_linux():
    result = probe("report", str(XEN_TRACE), "--cpu-hz", "2.4G", "--format", "json")
    assert result["code"] == 0, result["err"]
    assert loaded(result, READER_MODULE["xentrace"])
    assert loaded(result, "numpy")
    assert loaded(result, "runstate.sources.linux") == []
    for module in NEVER_IN_A_REPORT:
        assert not loaded(result, module), module
    # and the figures are those the file alone gives (the vector's "simple" reference)
    reference = json.loads((XEN_DATA / "c01_basic.reference.json").read_text())["simple"]
    report = {d["domain"]: d["states"] for d in json.loads(result["out"])["domains"]}
    assert sorted(report) == sorted(k for k in reference["domains"] if k != "32767")
    for key, states in report.items():
        expected = reference["domains"][key]
        for state, figures in states.items():
            want = expected.get(state, {"cycles": 0, "count": 0})
            assert (figures["cycles"], figures["count"]) == (want["cycles"], want["count"])


def test_a_xentrace_report_starts_reading_before_it_loads_its_analysis():
    # the read ahead starts (its C job imported) before dataclasses, typing, inspect or
    # numpy load: each module loaded before it would delay the whole report, as the job
    # reads on another core while they load; shutil (with zlib, bz2 and lzma) and
    # fractions (with decimal) are not loaded at all
    result = probe("report", str(XEN_TRACE), "--cpu-hz", "2.4G", "--format", "json",
                   in_order=True)
    assert result["code"] == 0, result["err"]
    order: list[str] = result["modules"]
    job = order.index("runstate.sources.xentrace._job")
    for late in ("dataclasses", "typing", "inspect", "numpy"):
        assert late in order[job:], late
        assert late not in order[:job], late
    for never in ("shutil", "fractions", "decimal"):
        assert never not in order, never


def test_perf_data_report_loads_its_reader_and_nothing_of_xen():
    result = probe("report", str(PERF_DATA), "--format", "json")
    assert result["code"] == 0, result["err"]
    assert loaded(result, READER_MODULE["perf-data"])
    assert loaded(result, "runstate.sources.xentrace") == []
    assert other_readers(result, {"perf-data"}) == []
    for module in NEVER_IN_A_REPORT:
        assert not loaded(result, module), module
    # the same trace as perf script text, read by another reader: the same figures
    text = probe("report", str(PERF_SCRIPT), "--format", "json")
    assert loaded(text, READER_MODULE["perf-script"])
    assert other_readers(text, {"perf-script"}) == []

    def figures(doc: dict[str, Any]) -> dict[str, Any]:
        return {d["domain"]: {s: v["ns"] for s, v in d["states"].items()}
                for d in json.loads(doc["out"])["domains"]}

    assert figures(result) == figures(text)
    assert figures(result)


def test_csv_report_loads_the_generic_reader_only():
    result = probe("report", str(TWO_VMS), "--format", "csv")
    assert result["code"] == 0, result["err"]
    assert loaded(result, READER_MODULE["csv"])
    assert other_readers(result, {"csv", "jsonl"}) == []
    for module in NEVER_IN_A_REPORT:
        assert not loaded(result, module), module
    totals = {row["name"]: row for row in csv.DictReader(io.StringIO(result["out"]))
              if row["scope"] == "total"}
    # two_vms.csv spans 1000..20000 ns with data lost over 13000..15000: db's vCPU has a
    # record after it (16000), web's second vCPU has none, so web stays lost to the end
    assert {name: (int(row["lifetime_ns"]), int(row["lost_ns"]))
            for name, row in totals.items()} == {"web": (19000, 7000), "db": (19000, 2000)}


def test_table_report_loads_the_table_renderer():
    result = probe("report", str(TWO_VMS))
    assert result["code"] == 0, result["err"]
    assert loaded(result, "runstate.report.table")
    assert "web" in result["out"] and "db" in result["out"]


def test_detecting_every_format_loads_no_reader_and_no_numpy():
    inputs = {"xentrace": XEN_TRACE, "perf-data": PERF_DATA, "perf-script": PERF_SCRIPT,
              "ftrace-text": DATA / "linux" / "sleepy2.ftrace.txt", "csv": TWO_VMS,
              "tracefs-recording": DATA / "linux" / "tracefs" / "rec"}
    code = ("import json, sys\n"
            "from runstate.sources.registry import detect\n"
            "names = {}\n"
            "for name, path in json.loads(sys.argv[1]).items():\n"
            "    head = b'' if name == 'tracefs-recording' else open(path, 'rb').read(65536)\n"
            "    names[name] = detect(path, head).FORMAT.name\n"
            "print(json.dumps({'names': names, 'modules': sorted(sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code,
                           json.dumps({k: str(v) for k, v in inputs.items()})],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    assert result["names"] == {name: name for name in inputs}
    assert not loaded(result, "numpy")
    assert other_readers(result, set()) == []


def test_formats_lists_every_reader_without_loading_one():
    result = probe("formats")
    assert result["code"] == 0
    assert not loaded(result, "numpy")
    lines = result["out"].splitlines()[1:]
    readers = sorted((r.load() for r in READERS), key=lambda r: r.FORMAT.priority)
    assert [line.split(None, 1) for line in lines] == [
        [r.FORMAT.name, r.FORMAT.description] for r in readers]


@pytest.mark.parametrize("name", [name for name, _, _ in cli_main.COMMANDS])
def test_every_subcommand_help_still_has_its_examples(run_cli, name):
    result = run_cli(name, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: runstate {name} ")
    assert re.search(rf"^examples?:\n  runstate {name}\b", result.out, re.M), result.out


def test_a_subcommand_whose_module_is_missing_is_not_offered(run_cli, monkeypatch):
    ghost = ("ghost", "ghost_cmd", "a subcommand this installation does not have")
    monkeypatch.setattr(cli_main, "COMMANDS", (*cli_main.COMMANDS, ghost))
    listing = run_cli("--help")
    assert listing.code == 0
    assert "ghost" not in listing.out and "formats" in listing.out
    refused = run_cli("ghost")
    assert refused.code == 2
    assert "invalid choice: 'ghost'" in refused.err


@pytest.mark.parametrize("argv", [
    ["--traceback", "report", "/no/such/file"],
    ["report", "/no/such/file", "--traceback"],
])
def test_traceback_before_or_after_the_subcommand(run_cli, argv):
    result = run_cli(*argv)
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err
    assert result.err.rstrip().endswith("runstate: error: /no/such/file: no such file")
