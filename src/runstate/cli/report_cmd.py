"""``runstate report``: read traces, print the domain runstate report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from runstate.cli.output import add_table_arguments, open_output, table_options
from runstate.cli.progress import progress_bar
from runstate.cli.units import DURATION_HELP, parse_duration_ns, parse_frequency, parse_seconds
from runstate.errors import UsageError
from runstate.sources.options import ReadOptions
from runstate.sources.registry import open_source, prefetch, reader_names

# Nothing here loads dataclasses or typing: the first input starts being read
# (prefetch) before they load, and every millisecond before that point is on
# the way of the whole report.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the analysis and each renderer (numpy) load when a report needs them
    from fractions import Fraction
    from typing import TextIO

    from runstate.analysis.pipeline import TraceWindow
    from runstate.engine.results import IntervalResult, RunResult
    from runstate.report.csv_out import CsvStream
    from runstate.report.json_out import JsonStream
    from runstate.report.model import Clock, Report
    from runstate.sources.base import Source, SourceInfo

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
                       epilog=EPILOG)
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="trace file, recording directory, or - for stdin")
    p.add_argument("--sample", nargs="?", const="qemu", choices=sorted(SAMPLES),
                   help="report on a bundled sample: qemu (default; a real 4-vCPU QEMU guest "
                   "on 2 cores) or sim (simulated CSV events)")
    p.add_argument("--format", choices=("table", "json", "csv", "xenalyze", "html"),
                   default="table",
                   help="output format (default: table; xenalyze needs --semantics xenalyze)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--input-format", metavar="NAME",
                   help="skip format detection; one of: " + ", ".join(reader_names()))
    p.add_argument("--from", dest="start", metavar="SECONDS",
                   help="window start, in seconds of the trace's own clock (as perf script "
                   "prints it; Xen: since the first record); clipped to the trace")
    p.add_argument("--to", dest="end", metavar="SECONDS",
                   help="window end, in the same seconds; clipped to the trace")
    p.add_argument("--interval", metavar="DURATION",
                   help="also report fixed intervals, e.g. 1s, 100ms; " + DURATION_HELP)
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
    p.add_argument("--width", type=int, default=None,
                   help="table width (default: the terminal's, or COLUMNS; piped output is "
                   "not shortened)")
    add_table_arguments(p)
    p.set_defaults(run=run, quick_exit=True)


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
    if args.format == "html":  # the report with its pictures, in one self-contained file
        from runstate.cli.plot_cmd import report_html

        return report_html(args, paths, options, out, err)
    # the first input is read on other threads while the analysis loads (numpy)
    prefetch(paths[0], options, args.input_format,
             whole=args.start is None and args.end is None and args.interval is None
             and not args.one_pass)
    from runstate.report.model import build_report

    with open_output(args.output, out) as sink:
        stream = _ReportStream.of(args.format, sink, several=len(paths) > 1)
        reports = []
        for path in paths:
            source = open_source(path, options, args.input_format)
            _warn_assumptions(source.info, err)
            result = _analyze(args, source, sink, stream, err)
            report = build_report(result, source.info)
            if stream is not None:
                stream.end(report)
            else:
                reports.append(report)
        if stream is not None:
            stream.close()
        else:
            sink.write(_render(reports, args, sink))
    return 0


#: a table with more intervals than this is refused: it could not be read on a screen
TABLE_MAX_INTERVALS = 1000


def _analyze(args: argparse.Namespace, source: Source, sink: TextIO,
             stream: _ReportStream | None, err: TextIO) -> RunResult:
    """One source's result; its intervals go to ``stream`` or a line printer as they finish."""
    from runstate.analysis.pipeline import IntervalLimit, analyze

    window = _window(args)
    limit = IntervalLimit()
    on_run = None
    if stream is not None:
        stream.begin(source)
        on_run = stream.intervals
    elif window.interval_ns is not None and not source.rereadable:
        on_run = _IntervalPrinter(sink, source).emit
    elif window.interval_ns is not None:
        limit = IntervalLimit(TABLE_MAX_INTERVALS, "a table that long cannot be read: use "
                              "--format csv or --format json, or a larger --interval")
    with progress_bar(err) as progress:
        return analyze(source, window, one_pass=args.one_pass, on_interval_run=on_run,
                       progress=progress, strict=args.strict, interval_limit=limit)


def _paths(args: argparse.Namespace) -> list[str]:
    paths = list(args.sources)
    if args.sample is not None:
        from importlib import resources

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


def _window(args: argparse.Namespace) -> TraceWindow:
    """The user's window in seconds: the pipeline places it once the trace's span is known."""
    from runstate.analysis.pipeline import TraceWindow

    def seconds(text: str | None) -> Fraction | None:
        if text is None:
            return None
        parse_seconds(text)  # the checks and the message
        from fractions import Fraction  # only for a window: it loads decimal too

        return Fraction(text.strip())

    start, end = seconds(args.start), seconds(args.end)
    if start is not None and end is not None and end <= start:
        raise UsageError("--to must be after --from")
    interval = None if args.interval is None else parse_duration_ns(args.interval)
    return TraceWindow(start, end, interval)


def _render(reports: list[Report], args: argparse.Namespace, sink: TextIO) -> str:
    from runstate.report.table import render_table

    options = table_options(args, sink)
    return "\n".join(render_table(r, options=options) for r in reports)


def _spans(first: IntervalResult, count: int, clock: Clock) -> Iterator[tuple[int, int]]:
    """(start, end) in ns of ``count`` equal intervals from ``first`` on."""
    step = first.end_ticks - first.start_ticks
    starts = range(first.start_ticks, first.start_ticks + count * step, step)
    if clock.hz is None:  # ticks are ns already: no conversion per interval
        return zip(starts, range(first.end_ticks, first.end_ticks + count * step, step),
                   strict=True)
    return ((clock.at(t), clock.at(t + step)) for t in starts)


def _domain_names(source: Source) -> dict[str, str]:
    from runstate.report.model import HOST_IDLE

    return {d.key: d.name for d in source.registry.domains if d.tags.get("kind") != HOST_IDLE}


class _ReportStream:
    """JSON or CSV written as the analysis runs: intervals as they finish, totals at the end."""

    def __init__(self, sink: TextIO, json_out: JsonStream | None,
                 csv_out: CsvStream | None) -> None:
        self._sink = sink
        self._json = json_out
        self._csv = csv_out
        self._source: Source | None = None

    @classmethod
    def of(cls, fmt: str, sink: TextIO, *, several: bool) -> _ReportStream | None:
        if fmt == "json":
            from runstate.report.json_out import JsonStream

            return cls(sink, JsonStream(sink, several), None)
        if fmt == "csv":
            from runstate.report.csv_out import CsvStream

            return cls(sink, None, CsvStream(sink))
        return None

    def begin(self, source: Source) -> None:
        self._source = source
        if self._json is not None:
            self._json.begin()

    def intervals(self, first: IntervalResult, count: int) -> None:
        from runstate.report.model import Clock, interval_row

        assert self._source is not None
        # a stream learns its time origin as it reads, so look the clock up each time
        clock = Clock.of(self._source.info)
        row = interval_row(first, clock)
        if self._json is not None:
            self._json.intervals(row, _spans(first, count, clock))
        if self._csv is not None:
            self._csv.intervals(row, _spans(first, count, clock), _domain_names(self._source))
        if not self._source.rereadable:
            self._sink.flush()  # a stream's reader sees each interval when it completes

    def end(self, report: Report) -> None:
        if self._json is not None:
            self._json.end(report)
        if self._csv is not None:
            self._csv.totals(report)

    def close(self) -> None:
        if self._json is not None:
            self._json.close()


class _IntervalPrinter:
    """Prints each interval of a stream as a table line as soon as it completes."""

    def __init__(self, sink: TextIO, source: Source) -> None:
        self.sink = sink
        self.source = source
        self.started = False

    def emit(self, first: IntervalResult, count: int) -> None:
        import dataclasses

        from runstate.report.model import Clock, interval_row
        from runstate.report.table import interval_cells

        clock = Clock.of(self.source.info)
        row = interval_row(first, clock)
        names = _domain_names(self.source)
        if not self.started:
            self._write("start_s       domain  full_run full_cont conc_haz blocked "
                        "part_run part_cont lost (% of interval lifetime)")
            self.started = True
        for start, end in _spans(first, count, clock):
            for cells in interval_cells(dataclasses.replace(row, start_ns=start, end_ns=end),
                                        names):
                self._write(" ".join(c.rjust(8) for c in cells))
        self.sink.flush()

    def _write(self, line: str) -> None:
        self.sink.write(line + "\n")


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
            import json

            sink.write(json.dumps(xenalyze_to_dict(result), indent=2) + "\n")
        else:
            raise UsageError("--semantics xenalyze supports --format xenalyze, table or json")
    return 0
