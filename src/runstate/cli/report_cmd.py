"""``runstate report``: read traces, print the domain runstate report."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from importlib import resources
from typing import TextIO

from runstate.analysis.pipeline import Window, analyze
from runstate.cli.output import open_output
from runstate.cli.progress import progress_bar
from runstate.cli.units import parse_duration_ns, parse_frequency, parse_seconds
from runstate.engine.results import IntervalResult
from runstate.errors import UsageError
from runstate.report.csv_out import header as csv_header
from runstate.report.csv_out import interval_rows, render_csv
from runstate.report.json_out import interval_to_dict, render_json, report_to_dict
from runstate.report.model import HOST_IDLE, Clock, Report, build_report, interval_row
from runstate.report.table import interval_cells, render_table
from runstate.sources.base import ReadOptions, Source, SourceInfo
from runstate.sources.registry import open_source, reader_names

SAMPLES = {"qemu": "qemu-demo.rec", "sim": "sample.csv"}

EPILOG = """\
examples:
  runstate report --sample
  runstate report trace.bin --cpu-hz 2.4G --interval 100ms
  runstate report perf.data --group process --format csv -o runstates.csv
  runstate report events.csv --from 1.5 --to 3.0 --format json
  xentrace -D -e 0x0002f000 /dev/stdout | runstate report - --interval 1s

Percentages are of each domain's lifetime (the time it had at least one
member) within the window.  Times in JSON/CSV are integer nanoseconds; TSC
traces also give exact cycles.  Anomalies counted while reading are listed
under the table and in JSON "anomalies"."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="domain runstate report of one or more traces",
                       description="Read traces and report, per domain (VM, process, group), "
                       "the time in each domain runstate.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="trace file, recording directory, or - for stdin")
    p.add_argument("--sample", nargs="?", const="qemu", choices=sorted(SAMPLES),
                   help="report on a bundled sample: qemu (default; a real 4-vCPU QEMU guest "
                   "on 2 cores) or sim (simulated CSV events)")
    p.add_argument("--format", choices=("table", "json", "csv", "xenalyze"), default="table",
                   help="output format (default: table; xenalyze needs --semantics xenalyze)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--input-format", metavar="NAME",
                   help="skip format detection; one of: " + ", ".join(reader_names()))
    p.add_argument("--from", dest="start", metavar="SECONDS",
                   help="window start, in the trace's own clock (seconds)")
    p.add_argument("--to", dest="end", metavar="SECONDS",
                   help="window end, in the trace's own clock (seconds)")
    p.add_argument("--interval", metavar="DURATION",
                   help="also report fixed intervals, e.g. 1s, 100ms")
    p.add_argument("--cpu-hz", metavar="HZ", help="Xen: TSC frequency, e.g. 2.4G, 2400M")
    p.add_argument("--semantics", choices=("exact", "xenalyze"), default="exact",
                   help="Xen: exact (default) or xenalyze's own rules")
    p.add_argument("--group", metavar="MODE",
                   help="Linux: vm | process | cgroup | thread | FILE.json")
    p.add_argument("--strict", action="store_true", help="treat data anomalies as errors")
    p.add_argument("--lenient", action="store_true",
                   help="skip and count corrupt records instead of failing")
    p.add_argument("--one-pass", action="store_true",
                   help="read once, as for a stream (members count from their first record)")
    p.add_argument("--width", type=int, default=None, help="table width (default: terminal)")
    p.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class _Job:
    path: str
    source: Source
    window: Window


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    paths = _paths(args)
    options = ReadOptions(
        cpu_hz=None if args.cpu_hz is None else parse_frequency(args.cpu_hz),
        group=args.group, strict=args.strict, lenient=args.lenient,
    )
    if args.semantics == "xenalyze":
        return _run_xenalyze(args, paths, options, out, err)
    if args.format == "xenalyze":
        raise UsageError("--format xenalyze goes with --semantics xenalyze")
    with open_output(args.output, out) as sink:
        reports = []
        for path in paths:
            source = open_source(path, options, args.input_format)
            _warn_assumptions(source.info, err)
            window = _window(args, source.info)
            streaming = not source.rereadable and window.interval_ns is not None
            printer = _IntervalPrinter(args.format, sink, source) if streaming else None
            with progress_bar(err) as progress:
                result = analyze(source, window, one_pass=args.one_pass,
                                 on_interval=printer.emit if printer else None,
                                 progress=progress, strict=args.strict)
            reports.append(build_report(result, source.info))
        sink.write(_render(reports, args, sink))
    return 0


def _paths(args: argparse.Namespace) -> list[str]:
    paths = list(args.sources)
    if args.sample is not None:
        paths.append(str(resources.files("runstate") / "data" / SAMPLES[args.sample]))
    if not paths:
        raise UsageError("no SOURCE given (a trace file, a recording directory, '-' for stdin, "
                         "or --sample)")
    if paths.count("-") > 1:
        raise UsageError("stdin ('-') can be read only once")
    return paths


def _warn_assumptions(info: SourceInfo, err: TextIO) -> None:
    if info.cpu_hz_assumed and info.cpu_hz is not None:
        print(f"runstate: {info.path}: --cpu-hz not given; assuming {info.cpu_hz / 1e9:g} GHz "
              "(TSC frequency is not recorded in the file)", file=err)


def _window(args: argparse.Namespace, info: SourceInfo) -> Window:
    per_second = info.cpu_hz if info.cpu_hz is not None else 1e9
    origin = info.origin if info.origin is not None else 0

    def ticks(seconds: str | None) -> int | None:
        return None if seconds is None else origin + round(parse_seconds(seconds) * per_second)

    start, end = ticks(args.start), ticks(args.end)
    if start is not None and end is not None and end <= start:
        raise UsageError("--to must be after --from")
    interval = None
    if args.interval is not None:
        interval = max(1, round(parse_duration_ns(args.interval) * per_second / 1e9))
    return Window(start, end, interval)


def _render(reports: list[Report], args: argparse.Namespace, sink: TextIO) -> str:
    if args.format == "json":
        if len(reports) == 1:
            return render_json(reports[0])
        return json.dumps({"reports": [report_to_dict(r) for r in reports]}, indent=2) + "\n"
    if args.format == "csv":
        texts = [render_csv(r) for r in reports]
        return texts[0] + "".join(t.split("\n", 1)[1] for t in texts[1:])
    color = sink is sys.stdout and sink.isatty()
    width = args.width or (_terminal_width() if color else 100)
    return "\n".join(render_table(r, color=color, width=width) for r in reports)


def _terminal_width() -> int:
    import shutil

    return max(80, shutil.get_terminal_size((100, 24)).columns)


class _IntervalPrinter:
    """Prints each interval of a stream as soon as it completes."""

    def __init__(self, fmt: str, sink: TextIO, source: Source) -> None:
        self.fmt = fmt
        self.sink = sink
        self.source = source
        self.started = False

    def emit(self, interval: IntervalResult) -> None:
        # the source learns its time origin as it reads, so look it up each time
        row = interval_row(interval, Clock.of(self.source.info))
        names = {d.key: d.name for d in self.source.registry.domains
                 if d.tags.get("kind") != HOST_IDLE}
        if self.fmt == "json":
            self._write(json.dumps(interval_to_dict(row)))
        elif self.fmt == "csv":
            if not self.started:
                self._write(",".join(csv_header()))
            for cells in interval_rows([row], names):
                self._write(",".join(cells))
        else:
            if not self.started:
                self._write("start_s       domain  full_run full_cont conc_haz blocked "
                            "part_run part_cont lost (% of interval lifetime)")
            for cells in interval_cells(row, names):
                self._write(" ".join(c.rjust(8) for c in cells))
        self.started = True

    def _write(self, line: str) -> None:
        self.sink.write(line + "\n")
        self.sink.flush()


def _run_xenalyze(args: argparse.Namespace, paths: list[str], options: ReadOptions,
                  out: TextIO, err: TextIO) -> int:
    try:
        from runstate.analysis.xenalyze import run_xenalyze
        from runstate.report.xenalyze_text import render_xenalyze, xenalyze_to_dict
    except ImportError as error:
        raise UsageError(f"--semantics xenalyze is not available: {error}") from None
    if len(paths) != 1:
        raise UsageError("--semantics xenalyze reads exactly one trace")
    stream = sys.stdin.buffer if paths[0] == "-" else None
    if options.cpu_hz is None:
        print("runstate: --cpu-hz not given; assuming 2.4 GHz like xenalyze", file=err)
    result = run_xenalyze(paths[0], stream, options)
    with open_output(args.output, out) as sink:
        if args.format in ("xenalyze", "table"):
            sink.write(render_xenalyze(result))
        elif args.format == "json":
            sink.write(json.dumps(xenalyze_to_dict(result), indent=2) + "\n")
        else:
            raise UsageError("--semantics xenalyze supports --format xenalyze, table or json")
    return 0
