"""A Grafana dashboard for the exporter's metrics, built as data and written as JSON.

One row per VM (a repeated row over the ``domain`` variable): the seven
domain states stacked to 100 % of the lifetime, each vCPU's running and
runnable (ready) time, and the VM's findings.  A table of all findings tops it.
"""

from __future__ import annotations

import json
from typing import Any

from runstate.model.states import DomainState

#: colours per state: healthy green/blue, waiting orange/red, unknown grey
STATE_COLOURS = {
    DomainState.FULL_RUN: "#5794F2",
    DomainState.FULL_CONTENTION: "#C4162A",
    DomainState.CONCURRENCY_HAZARD: "#FF9830",
    DomainState.BLOCKED: "#B7DBAB",
    DomainState.PARTIAL_RUN: "#73BF69",
    DomainState.PARTIAL_CONTENTION: "#FADE2A",
    DomainState.LOST: "#8E8E8E",
}

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    """The dashboard model (Grafana schema 39)."""
    panels: list[dict[str, Any]] = [_findings_table(0)]
    panels.append({"type": "row", "title": "$domain", "repeat": "domain", "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": 8}, "id": 2, "panels": []})
    panels.append(_state_panel(3, 9))
    panels.append(_vcpu_panel(4, 9))
    return {
        "title": "runstate: domain runstates",
        "uid": "runstate-domains",
        "description": "Time each VM (domain) spends in the six domain runstates, per vCPU "
                       "run/ready time, and the advice of runstate.",
        "tags": ["runstate", "virtualization", "scheduler"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus"},
            {"name": "instance", "type": "query", "datasource": DATASOURCE,
             "query": "label_values(runstate_domain_members, instance)",
             "refresh": 2, "includeAll": False, "multi": False},
            {"name": "domain", "type": "query", "datasource": DATASOURCE,
             "query": 'label_values(runstate_domain_members{instance="$instance"}, domain)',
             "refresh": 2, "includeAll": True, "multi": True},
        ]},
        "panels": panels,
    }


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _state_panel(panel_id: int, y: int) -> dict[str, Any]:
    expr = ('sum by (state) (rate(runstate_domain_state_seconds_total'
            '{instance="$instance", domain="$domain"}[$__rate_interval]))\n'
            '/ ignoring (state) group_left sum (rate(runstate_domain_state_seconds_total'
            '{instance="$instance", domain="$domain"}[$__rate_interval]))')
    overrides = [
        {"matcher": {"id": "byName", "options": state.label},
         "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}]}
        for state, colour in STATE_COLOURS.items()
    ]
    return {
        "type": "timeseries", "id": panel_id, "title": "domain runstates (share of lifetime)",
        "datasource": DATASOURCE,
        "gridPos": {"h": 9, "w": 12, "x": 0, "y": y},
        "targets": [_target(expr, "{{state}}", "A")],
        "fieldConfig": {
            "defaults": {"unit": "percentunit", "min": 0, "max": 1,
                         "custom": {"stacking": {"mode": "normal", "group": "A"},
                                    "fillOpacity": 80, "lineWidth": 0,
                                    "drawStyle": "line"}},
            "overrides": overrides,
        },
        "options": {"legend": {"displayMode": "table", "placement": "right",
                               "calcs": ["mean"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def _vcpu_panel(panel_id: int, y: int) -> dict[str, Any]:
    expr = ('rate(runstate_member_state_seconds_total{instance="$instance", domain="$domain", '
            'state=~"running|runnable"}[$__rate_interval])')
    return {
        "type": "timeseries", "id": panel_id, "title": "per vCPU: run and ready (runnable)",
        "datasource": DATASOURCE,
        "gridPos": {"h": 9, "w": 12, "x": 12, "y": y},
        "targets": [_target(expr, "{{member}} {{state}}", "A")],
        "fieldConfig": {"defaults": {"unit": "percentunit", "min": 0,
                                     "custom": {"fillOpacity": 10}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def _findings_table(y: int) -> dict[str, Any]:
    expr = 'runstate_finding{instance="$instance"}'
    return {
        "type": "table", "id": 1, "title": "findings (runstate advise, last minute)",
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 24, "x": 0, "y": y},
        "targets": [dict(_target(expr, "", "A"), format="table", instant=True)],
        "fieldConfig": {"defaults": {"unit": "percentunit"}, "overrides": []},
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
            "renameByName": {"Value": "share"}}}],
        "options": {"showHeader": True},
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
