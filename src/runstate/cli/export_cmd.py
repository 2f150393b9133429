"""``runstate export``: the run as a trace for a timeline viewer (Perfetto, Chrome JSON)."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import TextIO

from runstate.cli.plot_cmd import add_source_arguments, analyze_sources, output_format
from runstate.errors import EnvironmentProblem, UsageError

EPILOG = """\
examples:
  runstate export --sample -o demo.pftrace --interval 100ms   open at ui.perfetto.dev
  runstate export trace.bin --cpu-hz 2.4G -o xen.json         chrome://tracing, Perfetto

.pftrace: a native Perfetto trace: per domain a process with a "domain state"
track (one slice per episode), a thread per member (running / runnable /
blocked / offline / lost), counters of the state shares per --interval, the
host's CPU idleness, instants where data was lost.  .json: the same as Chrome
trace events (µs with exact ns decimals).  Timestamps are the trace's own clock."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="timeline trace for Perfetto (.pftrace) or Chrome (.json)",
                       description="Write each domain's and member's states over time as a "
                       "trace for a timeline viewer.", epilog=EPILOG)
    add_source_arguments(p)
    p.add_argument("-o", "--output", metavar="FILE", required=True,
                   help="FILE.pftrace (Perfetto) or FILE.json (Chrome trace events)")
    p.set_defaults(run=run, quick_exit=True)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from runstate.export.chrome_json import ChromeJsonWriter
    from runstate.export.layout import TrackNames
    from runstate.export.perfetto import PerfettoWriter
    from runstate.report.slices import stream_slices

    fmt = output_format(args.output, ("pftrace", "json"))
    runs = analyze_sources(args, err)
    if len(runs) != 1:
        raise UsageError("export writes one SOURCE per file (each trace has its own clock)")
    item = runs[0]
    names = TrackNames(item.source.registry)
    directory = os.path.dirname(os.path.abspath(args.output))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".runstate-", suffix=".tmp")
    except OSError as error:
        raise EnvironmentProblem(f"cannot write {args.output}: {error.strerror}") from None
    try:
        if fmt == "json":
            with os.fdopen(fd, "w", encoding="utf-8") as text:
                chrome = ChromeJsonWriter(text, names, item.clock)
                stream_slices(item.source, item.result, chrome)
                chrome.close(item.report)
        else:
            with os.fdopen(fd, "wb") as binary:
                perfetto = PerfettoWriter(binary, names, item.clock)
                stream_slices(item.source, item.result, perfetto)
                perfetto.close(item.report)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"runstate: wrote {args.output}", file=err)
    return 0
