"""``runstate serve``: a Prometheus exporter of live domain runstates."""

from __future__ import annotations

import argparse
import threading
from typing import TextIO

from runstate.cli.advise_cmd import load_thresholds
from runstate.cli.stopping import stop_on_signals
from runstate.cli.units import parse_duration_ns
from runstate.errors import EnvironmentProblem, UsageError

DEFAULT_LISTEN = "127.0.0.1:9477"

EPILOG = f"""\
examples:
  runstate serve --all --group vm                every QEMU VM on this host
  runstate serve --vm web1 --vm db1              two VMs
  runstate serve --pid 1234 --group thread       one process, each thread its own domain
  runstate serve --all --listen 0.0.0.0:9477     reachable from other hosts

Listens on {DEFAULT_LISTEN} unless --listen says otherwise.  Serves GET/HEAD of
/metrics (Prometheus text format) and /.  Needs root and the prometheus extra
(pip install 'runstate[prometheus]').  Stops cleanly on SIGTERM or Ctrl-C and
removes what it set up in the kernel."""

#: how often the monitor looks for new tasks of the selection (a VM started later)
REFRESH_S = 5.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="Prometheus exporter of live domain runstates",
                       description="Watch VMs or processes live and serve their domain "
                       "runstate counters, member counters and advice as Prometheus metrics.",
                       epilog=EPILOG)
    p.add_argument("--pid", type=int, action="append", default=[], metavar="PID",
                   help="watch this process's threads (and what they fork); repeatable")
    p.add_argument("--vm", action="append", default=[], metavar="NAME",
                   help="watch the QEMU VM started with -name NAME; repeatable")
    p.add_argument("--all", action="store_true", help="watch every task")
    p.add_argument("--group", metavar="MODE",
                   help="vm | process | cgroup | thread | FILE.json (how tasks form domains)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                   help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks one)")
    p.add_argument("--source", default="auto", choices=("auto", "bpf", "tracefs"),
                   help="live source (default: auto, eBPF where it loads, else tracefs)")
    p.add_argument("--thresholds", metavar="FILE", help="advice thresholds (TOML)")
    p.add_argument("--advice-window", default="60s", metavar="DURATION",
                   help="runstate_finding judges this much recent time (default 60s)")
    p.set_defaults(run=run)


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6addr]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen: expected ADDR:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not (args.pid or args.vm or args.all):
        raise UsageError("choose what to watch: --pid PID, --vm NAME or --all")
    if args.all and (args.pid or args.vm):
        raise UsageError("--all watches everything; do not combine it with --pid or --vm")
    host, port = parse_listen(args.listen)
    thresholds = load_thresholds(args.thresholds)
    window_ns = parse_duration_ns(args.advice_window)
    try:
        from runstate.export.prometheus import MetricsServer, SnapshotCollector, make_registry
    except ImportError as error:
        raise EnvironmentProblem(
            f"runstate serve needs the prometheus extra: pip install 'runstate[prometheus]' "
            f"({error})") from None
    try:
        from runstate.live.monitor import Monitor  # type: ignore[import-not-found,unused-ignore]
    except ImportError as error:
        raise EnvironmentProblem(f"live input is not available here: {error}") from None
    from runstate.live.snapshot import Selection

    selection = Selection(pids=tuple(args.pid), vms=tuple(args.vm), all_tasks=args.all,
                          group=args.group)
    stop = threading.Event()
    with stop_on_signals(stop), Monitor(selection, source=args.source) as monitor:
        collector = SnapshotCollector(monitor.snapshot, thresholds, window_ns)
        try:
            server = MetricsServer(make_registry(collector), host, port)
        except OSError as error:
            raise EnvironmentProblem(f"--listen {args.listen}: {error.strerror or error}") \
                from None
        server.start()
        bound_host, bound_port = server.address
        for note in monitor.fallback_notes:
            print(f"runstate: {note}", file=err)
        print(f"runstate: serving http://{_url_host(bound_host)}:{bound_port}/metrics",
              file=err, flush=True)
        try:
            while not stop.wait(REFRESH_S):
                monitor.refresh()  # follow VMs and processes that started since
        finally:
            server.close()
    print("runstate: stopped", file=err, flush=True)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
