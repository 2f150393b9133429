"""``runstate advise``: what to do about each domain, from a trace or a live host."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runstate.cli.output import open_output
from runstate.cli.report_cmd import SAMPLES, _paths, _warn_assumptions, _window
from runstate.cli.units import parse_duration_ns, parse_frequency
from runstate.errors import EnvironmentProblem, UsageError
from runstate.sources.base import ReadOptions
from runstate.sources.registry import open_source, reader_names

if TYPE_CHECKING:  # the rules, the analysis and the live monitor load when advice is asked
    from runstate.analysis.advice import DomainAdvice, DomainFigures, Level, Thresholds
    from runstate.live.snapshot import LiveSnapshot
    from runstate.report.advice_out import AdviceWindow

#: exit code when a finding reaches --fail-on
EXIT_FINDING = 3

EPILOG = """\
examples:
  runstate advise perf.data --group vm               findings per QEMU VM of a trace
  runstate advise trace.bin --cpu-hz 2.4G --interval 1s --format json
  runstate advise --vm web1 --duration 30            watch a running VM for 30 s
  runstate advise host.rec --fail-on high            exit 3 when a finding is high or worse
  runstate advise --emit-alert-rules > alerts.yml    Prometheus alerts, same thresholds

Rules: more_vcpus (full_run share), host_overcommitted (full_contention +
partial_contention), fewer_vcpus (concurrency_hazard; hazard episodes whose
p95 outlasts the scheduler slice raise the level).  Levels low/medium/high/
critical at 5/10/25/50 % for contention states and 25/50/80/90 % for full_run,
of each domain's lifetime; change them with --thresholds FILE (TOML).
Exit codes: 0 ok, 1 bad input, 2 usage, 3 a finding reached --fail-on."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("advise", help="what to do about each VM or group (add/remove vCPUs, "
                       "move load), from a trace or live",
                       description="Turn domain runstates into findings for people and load "
                       "balancers: each with its level, the figures that fired it, and the "
                       "action it calls for.",
                       epilog=EPILOG)
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="trace file, recording directory, or - for stdin")
    p.add_argument("--sample", nargs="?", const="qemu", choices=sorted(SAMPLES),
                   help="advise on a bundled sample (as runstate report --sample)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text for people (default) or json for programs")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--thresholds", metavar="FILE", help="level thresholds (TOML)")
    p.add_argument("--fail-on", metavar="LEVEL", type=_level,
                   help=f"exit {EXIT_FINDING} when a finding reaches LEVEL "
                   "(low, medium, high, critical)")
    p.add_argument("--emit-alert-rules", action="store_true",
                   help="print Prometheus alert rules for these thresholds and exit")
    trace = p.add_argument_group("trace input (as runstate report)")
    trace.add_argument("--input-format", metavar="NAME",
                       help="skip format detection; one of: " + ", ".join(reader_names()))
    trace.add_argument("--from", dest="start", metavar="SECONDS", help="window start")
    trace.add_argument("--to", dest="end", metavar="SECONDS", help="window end")
    trace.add_argument("--interval", metavar="DURATION",
                       help="also judge each interval (e.g. 1s): sustained or a spike")
    trace.add_argument("--cpu-hz", metavar="HZ", help="Xen: TSC frequency, e.g. 2.4G")
    trace.add_argument("--group", metavar="MODE",
                       help="vm | process | cgroup | thread | FILE.json")
    trace.add_argument("--strict", action="store_true", help="treat data anomalies as errors")
    trace.add_argument("--lenient", action="store_true",
                       help="skip and count corrupt records instead of failing")
    trace.add_argument("--one-pass", action="store_true", help="read once, as for a stream")
    live = p.add_argument_group("live input (needs root)")
    live.add_argument("--pid", type=int, action="append", default=[], metavar="PID",
                      help="watch this process's threads; repeatable")
    live.add_argument("--vm", action="append", default=[], metavar="NAME",
                      help="watch the QEMU VM started with -name NAME; repeatable")
    live.add_argument("--all", action="store_true", help="watch every task")
    live.add_argument("-d", "--duration", type=float, metavar="SECONDS",
                      help="how long to watch (live input; required there)")
    p.set_defaults(run=run)


def _level(text: str) -> Level:
    from runstate.analysis.advice import Level

    try:
        return Level.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def load_thresholds(path: str | None) -> Thresholds:
    """The thresholds of ``--thresholds FILE``, or the defaults."""
    from runstate.analysis.advice import Thresholds, parse_thresholds

    if path is None:
        return Thresholds()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--thresholds: {path}: {error.strerror or error}") from None
    try:
        return parse_thresholds(text)
    except ValueError as error:
        raise UsageError(f"--thresholds: {path}: {error}") from None


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    thresholds = load_thresholds(args.thresholds)
    if args.emit_alert_rules:
        from runstate.export.rules import alert_rules

        with open_output(args.output, out) as sink:
            sink.write(alert_rules(thresholds))
        return 0
    live = bool(args.pid or args.vm or args.all)
    if live and (args.sources or args.sample):
        raise UsageError("give either trace SOURCEs or live --pid/--vm/--all, not both")
    window: AdviceWindow | None
    if live:
        advice, window = _advise_live(args, thresholds, err)
    else:
        advice, window = _advise_traces(args, thresholds, err)
    from runstate.analysis.advice import reaches
    from runstate.report.advice_out import render_advice_json, render_advice_text

    with open_output(args.output, out) as sink:
        if args.format == "json":
            sink.write(render_advice_json(advice, thresholds, window))
        else:
            sink.write(render_advice_text(advice, thresholds, window))
    if args.fail_on is not None and reaches(advice, args.fail_on):
        return EXIT_FINDING
    return 0


def _advise_traces(args: argparse.Namespace, thresholds: Thresholds, err: TextIO
                   ) -> tuple[list[DomainAdvice], AdviceWindow | None]:
    from runstate.analysis.advice import advise
    from runstate.analysis.pipeline import analyze
    from runstate.report.advice_out import AdviceWindow, figures_from_report
    from runstate.report.model import build_report

    if args.duration is not None:
        raise UsageError("--duration goes with live input (--pid/--vm/--all)")
    paths = _paths(args)
    options = ReadOptions(
        cpu_hz=None if args.cpu_hz is None else parse_frequency(args.cpu_hz),
        group=args.group, strict=args.strict, lenient=args.lenient,
    )
    advice: list[DomainAdvice] = []
    window = None
    for path in paths:
        source = open_source(path, options, args.input_format)
        _warn_assumptions(source.info, err)
        result = analyze(source, _window(args), one_pass=args.one_pass,
                         strict=args.strict)
        report = build_report(result, source.info)
        advice.extend(advise(figures_from_report(report), thresholds))
        if len(paths) == 1:
            window = AdviceWindow(report.source, report.start_ns, report.end_ns)
    return advice, window


def _advise_live(args: argparse.Namespace, thresholds: Thresholds, err: TextIO
                 ) -> tuple[list[DomainAdvice], AdviceWindow]:
    from runstate.analysis.advice import advise
    from runstate.export.figures import figures_from_snapshots
    from runstate.report.advice_out import AdviceWindow

    if args.duration is None or args.duration <= 0:
        raise UsageError("live advice needs --duration SECONDS (how long to watch)")
    if args.all and (args.pid or args.vm):
        raise UsageError("--all watches everything; do not combine it with --pid or --vm")
    for name in ("start", "end", "input_format", "cpu_hz"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')} goes with trace input")
    interval_ns = None if args.interval is None else parse_duration_ns(args.interval)
    first, snapshots = watch(args, interval_ns, err)
    latest = snapshots[-1]
    figures: list[DomainFigures] = figures_from_snapshots(latest, first, snapshots[:-1])
    window = AdviceWindow(f"live ({latest.source})", first.time_ns, latest.time_ns)
    return list(advise(figures, thresholds)), window


def watch(args: argparse.Namespace, interval_ns: int | None, err: TextIO
          ) -> tuple[LiveSnapshot, list[LiveSnapshot]]:
    """Run a monitor for the duration; return its first snapshot and the later ones
    (one per interval, the last at the end)."""
    from runstate.live.snapshot import Selection

    try:
        from runstate.live.monitor import (  # type: ignore[import-not-found,unused-ignore]
            Monitor,
            StopOnSignals,
        )
    except ImportError as error:
        raise EnvironmentProblem(f"live input is not available here: {error}") from None
    selection = Selection(pids=tuple(args.pid), vms=tuple(args.vm), all_tasks=args.all,
                          group=args.group)
    step = args.duration if interval_ns is None else interval_ns / 1e9
    ticks = max(1, math.ceil(args.duration / step - 1e-9))
    # SIGTERM / Ctrl-C end the watch early: the advice covers the time watched so far
    with StopOnSignals() as signals, Monitor(selection) as monitor:
        first = monitor.snapshot()
        start = time.monotonic()
        print(f"runstate: watching {len(first.domains)} domain(s) for {args.duration:g} s "
              f"({monitor.source}); Ctrl-C ends early", file=err, flush=True)
        snapshots = []
        for tick in range(1, ticks + 1):
            # on a schedule from the start: a late tick does not shift the ones after it
            delay = start + min(tick * step, args.duration) - time.monotonic()
            if delay > 0 and signals.stop.wait(delay):
                snapshots.append(monitor.snapshot())
                break
            snapshots.append(monitor.snapshot())
    return first, snapshots
