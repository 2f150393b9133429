"""``runstate plot``: a picture of each domain's states over time (PNG, SVG or PDF)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from runstate.cli.report_cmd import SAMPLES, _paths, _warn_assumptions, _window
from runstate.errors import EnvironmentProblem, UsageError
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source

if TYPE_CHECKING:  # the analysis and the drawing (numpy, matplotlib) load when a run needs them
    from runstate.engine.results import RunResult
    from runstate.report.html import Section
    from runstate.report.model import Clock, Report
    from runstate.report.slices import SliceStore
    from runstate.sources.base import Source

FORMATS = ("png", "svg", "pdf")
#: pictures in an HTML report: the domains with the most contention, as small multiples
MAX_HTML_DOMAINS = 40

EPILOG = """\
examples:
  runstate plot --sample -o demo.png --interval 250ms
  runstate plot perf.data --top 12 -o busiest.svg
  runstate plot trace.bin --cpu-hz 2.4G --domain 3 --domain 7 -o vms.pdf

Each domain gets a stacked area of its state shares per time bin (the
--interval, or 1/120 of the window), a strip of the state itself and, for up
to 6 domains of at most 16 members, one lane per member."""


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Input options shared by ``plot``, ``export`` and ``report``."""
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="trace file or recording directory")
    p.add_argument("--sample", nargs="?", const="qemu", choices=sorted(SAMPLES),
                   help="use a bundled sample (qemu, the default, or sim)")
    p.add_argument("--input-format", metavar="NAME", help="skip format detection")
    p.add_argument("--from", dest="start", metavar="SECONDS", help="window start (trace clock)")
    p.add_argument("--to", dest="end", metavar="SECONDS", help="window end (trace clock)")
    p.add_argument("--interval", metavar="DURATION", help="time bins / counters, e.g. 100ms")
    p.add_argument("--cpu-hz", metavar="HZ", help="Xen: TSC frequency, e.g. 2.4G")
    p.add_argument("--group", metavar="MODE", help="Linux: vm | process | cgroup | thread")
    p.add_argument("--lenient", action="store_true", help="skip and count corrupt records")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plot", help="picture of domain states over time (png/svg/pdf)",
                       description="Draw each domain's runstates over time.", epilog=EPILOG)
    add_source_arguments(p)
    p.add_argument("-o", "--output", metavar="FILE", required=True,
                   help="FILE.png, FILE.svg or FILE.pdf")
    p.add_argument("--domain", action="append", metavar="ID",
                   help="only this domain (key or name); repeatable")
    p.add_argument("--top", type=int, metavar="N",
                   help="only the N domains with the most contention")
    p.set_defaults(run=run, quick_exit=True)


@dataclass(frozen=True, slots=True)
class Run:
    """One source analysed, with what a picture or an export of it needs."""

    source: Source
    result: RunResult
    report: Report

    @property
    def clock(self) -> Clock:
        from runstate.report.model import Clock

        return Clock.of(self.source.info)

    @property
    def interval_ns(self) -> int | None:
        """The --interval in ns (the length of the run's first interval), if given."""
        if not self.result.intervals:
            return None
        first = self.result.intervals[0]
        return self.clock.ns(first.end_ticks - first.start_ticks)

    def slices(self) -> SliceStore:
        from runstate.report.slices import SliceStore, stream_slices

        store = SliceStore()
        stream_slices(self.source, self.result, store)
        return store


def analyze_sources(args: argparse.Namespace, err: TextIO) -> list[Run]:
    """Open and analyse every SOURCE (files only: slices need a second read)."""
    from runstate.analysis.pipeline import analyze
    from runstate.report.model import build_report

    options = ReadOptions(cpu_hz=None if args.cpu_hz is None else _hz(args.cpu_hz),
                          group=args.group, lenient=args.lenient)
    runs = []
    for path in _paths(args):
        if path == "-":
            raise UsageError("a timeline needs a file (it is read more than once), not stdin")
        source = open_source(path, options, args.input_format)
        _warn_assumptions(source.info, err)
        window = _window(args)
        result = analyze(source, window)
        runs.append(Run(source, result, build_report(result, source.info)))
    return runs


def _hz(text: str) -> float:
    from runstate.cli.units import parse_frequency

    return parse_frequency(text)


def output_format(path: str, choices: tuple[str, ...]) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in choices:
        raise UsageError(f"{path}: the file name must end in ." + ", .".join(choices))
    return ext


def chosen_domains(run: Run, wanted: list[str] | None, top: int | None) -> list[str]:
    """Domain keys to draw: --domain (key or name), else all; --top keeps the most contended."""
    from runstate.report.plot import contention_ns

    report = run.report
    keys = [r.domain for r in report.domains if r.lifetime_ns > 0]
    if wanted:
        by_name = {r.name: r.domain for r in report.domains}
        missing = [w for w in wanted if w not in keys and w not in by_name]
        if missing:
            raise UsageError("no such domain: " + ", ".join(missing))
        keys = [w if w in keys else by_name[w] for w in wanted]
    if top is not None:
        if top < 1:
            raise UsageError("--top must be at least 1")
        keys = sorted(keys, key=lambda k: -contention_ns(report, k))[:top]
    return keys


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from runstate.report.plot import panels, render

    fmt = output_format(args.output, FORMATS)
    figures = []
    for item in analyze_sources(args, err):
        keys = chosen_domains(item, args.domain, args.top)
        store = item.slices()
        figures += panels(item.report, store, item.source.registry, item.clock,
                          interval_ns=item.interval_ns, keys=keys,
                          lanes=len(keys) <= 6)
    title = ", ".join(os.path.basename(p.rstrip("/")) for p in _paths(args))
    data = render(figures, fmt, title=f"domain runstates: {title}")
    _write_bytes(args.output, data)
    count = f"{len(figures)} domain" + ("" if len(figures) == 1 else "s")
    print(f"runstate: wrote {args.output} ({count})", file=err)
    return 0


def _write_bytes(path: str, data: bytes) -> None:
    """Write atomically: the file appears whole or not at all."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as error:
        raise EnvironmentProblem(f"cannot write {path}: {error.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def report_html(args: argparse.Namespace, paths: list[str], options: ReadOptions,
                out: TextIO, err: TextIO) -> int:
    """``runstate report --format html``: the report of every SOURCE with its pictures."""
    from runstate.analysis.pipeline import analyze
    from runstate.cli.output import open_output
    from runstate.report.html import render_html
    from runstate.report.model import build_report

    sections = []
    for path in paths:
        source = open_source(path, options, args.input_format)
        _warn_assumptions(source.info, err)
        result = analyze(source, _window(args), one_pass=args.one_pass, strict=args.strict)
        item = Run(source, result, build_report(result, source.info))
        sections.append(_html_section(item))
    title = "runstate report: " + ", ".join(os.path.basename(p.rstrip("/")) for p in paths)
    with open_output(args.output, out) as sink:
        sink.write(render_html(sections, title))
    return 0


def _html_section(item: Run) -> Section:
    from runstate.report.html import Section
    from runstate.report.plot import panels, render

    if not item.source.rereadable:
        return Section(item.report, None, "no timeline: a stream is read only once")
    try:
        keys = chosen_domains(item, None, MAX_HTML_DOMAINS)
        if not keys:
            return Section(item.report, None, "no domain lived in the window")
        figures = panels(item.report, item.slices(), item.source.registry, item.clock,
                         interval_ns=item.interval_ns, keys=keys, lanes=len(keys) <= 6)
        svg = render(figures, "svg", title=os.path.basename(item.report.source.rstrip("/")))
        svg_text = svg.decode("utf-8")
    except EnvironmentProblem as error:  # matplotlib missing: the report without pictures
        return Section(item.report, None, str(error))
    note = "" if len(keys) == len(item.report.domains) else \
        f"pictures of the {len(keys)} domains with the most contention"
    return Section(item.report, svg_text, note)
