"""runstate: how each VM or thread group spends its time in the six domain runstates.

The library in three calls::

    import runstate

    report = runstate.analyze("trace.bin", group="vm", interval="1s", cpu_hz="2.4G")
    for domain in report.domains:
        print(domain.name, domain.lifetime_ns,
              {state.label: row.ns for state, row in domain.states.items()})
    print(runstate.render(report, "json"))

:func:`analyze` returns a :class:`runstate.report.model.Report`: the window, every
domain with its seven state times in ns (and exact cycles for TSC traces),
episode statistics and per-member times, the intervals, the anomaly counters and
the notes, exactly the figures ``runstate report`` prints.  :func:`open_source`
gives the lower-level :class:`~runstate.sources.base.Source` (columnar event
batches) of any supported file.

The package is layered: ``sources`` (one reader per trace format) produce
columnar :class:`~runstate.model.events.EventBatch` objects, the ``engine``
turns them into per-domain runstate accounting, and ``analysis``/``report``/
``cli`` sit on top.  Imports only go in that direction.  This module imports
the layers only when a function is called, so ``import runstate`` stays cheap.
"""

from __future__ import annotations

from runstate.errors import InputError, RunstateError, UsageError
from runstate.model.states import DomainState, MemberState

#: ``typing.TYPE_CHECKING`` without importing typing, which costs every command
#: a few ms of start-up (type checkers know this name)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runstate.analysis.pipeline import TraceWindow
    from runstate.model.events import EventBatch
    from runstate.model.registry import Registry
    from runstate.report.model import Report
    from runstate.sources.base import Source

__version__ = "0.1.0"

#: output formats :func:`render` knows
RENDER_FORMATS = ("table", "json", "csv")


def open_source(path: str, *, input_format: str | None = None, cpu_hz: float | str | None = None,
                group: str | None = None, strict: bool = False,
                lenient: bool = False) -> Source:
    """Open a trace file or recording directory, detecting its format from the content.

    Args:
        path: a trace file, a ``runstate record`` directory, or ``-`` for stdin.
        input_format: a reader name (``runstate formats`` lists them) to skip detection.
        cpu_hz: Xen: the TSC frequency in Hz, or text such as ``"2.4G"``.
        group: Linux: ``vm``, ``process``, ``cgroup``, ``thread`` or a JSON file path.
        strict: make data anomalies errors.
        lenient: skip and count corrupt records instead of failing.

    Raises:
        InputError: the file cannot be read or is not a trace of a known format.
        UsageError: an option value is invalid.
    """
    from runstate.cli.units import parse_frequency
    from runstate.sources.base import ReadOptions
    from runstate.sources.registry import open_source as open_any

    hz = parse_frequency(cpu_hz) if isinstance(cpu_hz, str) else cpu_hz
    if hz is not None and not hz > 0:
        raise UsageError(f"the frequency must be positive: {cpu_hz!r}")
    options = ReadOptions(cpu_hz=hz, group=group, strict=strict, lenient=lenient)
    return open_any(path, options, input_format)


def analyze(path: str, *, group: str | None = None, interval: str | int | None = None,
            start: float | None = None, end: float | None = None,
            cpu_hz: float | str | None = None, input_format: str | None = None,
            one_pass: bool = False, strict: bool = False, lenient: bool = False) -> Report:
    """The domain runstate report of one trace: what ``runstate report PATH`` prints.

    Args:
        path, group, cpu_hz, input_format, strict, lenient: as for :func:`open_source`.
        interval: also account fixed intervals: a duration text (``"1s"``,
            ``"100ms"``) or an int number of ns.
        start, end: the window, in seconds of the trace's own clock (as ``perf
            script`` prints it; for Xen, seconds since the first record).
        one_pass: read once, as for a stream: members count from their first record.

    Returns:
        The report: ``domains`` (each with ``states[DomainState.FULL_RUN].ns`` and
        so on, ``lifetime_ns``, ``members``), ``host_idle``, ``intervals``,
        ``anomalies``, ``notes``, ``start_ns`` / ``end_ns``.
    """
    from runstate.analysis.pipeline import analyze as run_pipeline
    from runstate.report.model import build_report

    source = open_source(path, input_format=input_format, cpu_hz=cpu_hz, group=group,
                         strict=strict, lenient=lenient)
    window = _window(start, end, interval)
    result = run_pipeline(source, window, one_pass=one_pass, strict=strict)
    return build_report(result, source.info)


def render(report: Report, fmt: str = "table") -> str:
    """A report as ``runstate report --format FMT`` prints it (table, json or csv)."""
    if fmt == "json":
        from runstate.report.json_out import render_json

        return render_json(report)
    if fmt == "csv":
        from runstate.report.csv_out import render_csv

        return render_csv(report)
    if fmt == "table":
        from runstate.report.table import render_table

        return render_table(report)
    raise UsageError(f"unknown output format {fmt!r}; known: {', '.join(RENDER_FORMATS)}")


def _window(start: float | None, end: float | None,
            interval: str | int | None) -> TraceWindow:
    """The user's window in seconds of the trace's clock, placed by the pipeline once the
    trace's span is known (as ``runstate report --from/--to/--interval`` does)."""
    from fractions import Fraction

    from runstate.analysis.pipeline import TraceWindow
    from runstate.cli.units import parse_duration_ns

    def seconds(value: float | None) -> Fraction | None:
        # through the decimal text, so 0.1 means one tenth as on the command line
        return None if value is None else Fraction(repr(float(value)))

    step = None
    if interval is not None:
        step = parse_duration_ns(interval) if isinstance(interval, str) else int(interval)
        if step <= 0:
            raise UsageError(f"the interval must be positive: {interval!r}")
    first, last = seconds(start), seconds(end)
    if first is not None and last is not None and last <= first:
        raise UsageError("the window end must be after its start")
    return TraceWindow(first, last, step)


def __getattr__(name: str) -> Any:
    """``runstate.EventBatch`` and ``runstate.Registry`` load numpy only when first used."""
    if name == "EventBatch":
        from runstate.model.events import EventBatch

        return EventBatch
    if name == "Registry":
        from runstate.model.registry import Registry

        return Registry
    raise AttributeError(f"module 'runstate' has no attribute {name!r}")


__all__ = [
    "RENDER_FORMATS",
    "DomainState",
    "EventBatch",
    "InputError",
    "MemberState",
    "Registry",
    "RunstateError",
    "UsageError",
    "__version__",
    "analyze",
    "open_source",
    "render",
]
