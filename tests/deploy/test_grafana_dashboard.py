"""deploy/grafana/tpipe-dashboard.json: valid Grafana JSON whose every query parses and uses only
series and labels ``plumbing.metrics`` exposes, and covers what an operator needs to watch."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.deploy_files import DASHBOARD, configmap
from tests.support.promql import dashboard_exprs, dashboard_panels, known_metrics, promql_problems, uses


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def test_dashboard_is_valid_grafana_json() -> None:
    d = _dashboard()
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    panels = list(dashboard_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    var_names = {v["name"] for v in d["templating"]["list"]}
    assert "datasource" in var_names
    for p in panels:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p.get("title")
        if p["type"] != "row":
            assert p.get("targets"), f"panel {p['title']!r} has no query"
            assert p["datasource"]["uid"] == "${datasource}"
            for t in p["targets"]:
                for var in re.findall(r"\$\{?(\w+)\}?", t["expr"]):
                    assert var.startswith("__") or var in var_names, f"undefined variable ${var}"


def test_dashboard_uses_only_metrics_from_plumbing_metrics() -> None:
    known = known_metrics()
    exprs = dashboard_exprs(DASHBOARD)
    assert len(exprs) >= 20
    problems = [f"{title}: {expr}: {p}" for title, expr in exprs for p in promql_problems(expr, known)]
    assert not problems, "\n".join(problems)


def test_dashboard_covers_what_operators_need() -> None:
    exprs = [e for _, e in dashboard_exprs(DASHBOARD)]
    used = set().union(*(uses(e).names for e in exprs))
    required = {
        "tpipe_http_requests_total",
        "tpipe_events_accepted_total",
        "tpipe_spool_depth_events",
        "tpipe_spool_bytes",
        "tpipe_spool_oldest_age_seconds",
        "tpipe_forward_latency_seconds_bucket",
        "tpipe_forward_errors_total",
        "tpipe_broker_up",
        "tpipe_worker_records_processed_total",
        "tpipe_worker_records_failed_total",
        "tpipe_worker_dlq_total",
        "tpipe_worker_lag_records",
        "tpipe_worker_commit_seconds_bucket",
    }
    assert required <= used, f"missing from the dashboard: {sorted(required - used)}"
    assert any('status!~"2.."' in e and "/" in e for e in exprs), "a non-2xx ratio panel"
    assert any("by (worker, topic, partition)" in e and "tpipe_worker_lag_records" in e for e in exprs), (
        "lag per partition"
    )
    assert any(e.startswith("histogram_quantile(0.99") and "tpipe_forward_latency_seconds_bucket" in e for e in exprs)
    [max_var] = [v for v in _dashboard()["templating"]["list"] if v["name"] == "spool_max_bytes"]
    assert max_var["query"] == configmap()["TPIPE_SPOOL_MAX_BYTES"], "dashboard spool max = the deployed max"
