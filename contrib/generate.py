"""Regenerate the committed Prometheus rules and Grafana dashboard from runstate's code.

    python contrib/generate.py            # write the files
    python contrib/generate.py --check    # exit 1 if a committed file differs

The alert rules use the default advice thresholds; for your own, run
``runstate advise --thresholds FILE --emit-alert-rules > alerts.yml``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from runstate.export.grafana import dashboard_json
from runstate.export.rules import alert_rules, recording_rules

HERE = Path(__file__).resolve().parent

#: committed file -> the function that produces its text
GENERATED: dict[str, Callable[[], str]] = {
    "prometheus/alerts.yml": alert_rules,
    "prometheus/recording.yml": recording_rules,
    "grafana/runstate-dashboard.json": dashboard_json,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, produce in GENERATED.items():
        path = HERE / name
        text = produce()
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    for name in stale:
        print(f"contrib/{name} is out of date: run python contrib/generate.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
