"""The PromQL check the dashboard and alert-rule tests rely on (``tests/support/promql.py``): it must
refuse what Prometheus would refuse or what tpipe does not expose, and pass real expressions."""

from __future__ import annotations

import pytest

from tests.support.promql import known_metrics, promql_problems, uses


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(tpipe_http_requests[5m]))", "unknown metric 'tpipe_http_requests'"),
        (
            "histogram_quantile(0.99, rate(tpipe_forward_latency_seconds[5m]))",
            "unknown metric 'tpipe_forward_latency_seconds'",
        ),
        ("up == 0", "unknown metric 'up'"),
        ("tpipe_spool_bytes_total", "unknown metric 'tpipe_spool_bytes_total'"),
        ('sum(rate(tpipe_http_requests_total{code="500"}[5m]))', "tpipe_http_requests_total has no label 'code'"),
        ("sum by (worker) (tpipe_spool_bytes)", "grouping label 'worker' is on none of ['tpipe_spool_bytes']"),
        (
            "max by (worker) (tpipe_worker_lag_records) / on (worker, pod) group_left (reason) tpipe_spool_bytes",
            "grouping label 'reason' is on none of",
        ),
        ("rat(tpipe_forwarded_events_total[5m])", "does not parse: unknown function with name 'rat'"),
        ("sum(rate(tpipe_forward_errors_total[5m])", "does not parse"),
        ("rate(tpipe_forward_errors_total)", "does not parse"),  # rate() needs a range vector
        ('{__name__="tpipe_spool_bytes"}', "selector without a metric name"),
        ("vector(1)", "references no tpipe metric"),
    ],
)
def test_promql_check_refuses(expr: str, problem: str) -> None:
    problems = promql_problems(expr, known_metrics())
    assert any(p.startswith(problem) for p in problems), problems


def test_promql_check_passes_real_expressions() -> None:
    known = known_metrics()
    for expr in (
        'sum(rate(tpipe_http_requests_total{status!~"2.."}[$__rate_interval])) / clamp_min(sum(rate(tpipe_http_requests_total[5m])), 1e-9)',
        "histogram_quantile(0.99, sum by (worker, le) (rate(tpipe_worker_commit_seconds_bucket[5m])))",
        "max by (worker, topic, partition) (tpipe_worker_lag_records) > 1000",
        "max(tpipe_spool_bytes) / $spool_max_bytes",
        "max by (pod) (tpipe_spool_bytes) / on (pod) max by (pod) (tpipe_spool_oldest_age_seconds)",
    ):
        assert promql_problems(expr, known) == [], expr


def test_uses_names_the_selectors_and_grouping_labels() -> None:
    found = uses("sum by (worker) (rate(tpipe_worker_dlq_total{worker=~\"a|b\"}[5m])) > 0")
    assert found.names == {"tpipe_worker_dlq_total"}
    assert found.matchers == [("tpipe_worker_dlq_total", "worker")]
    assert [label for label, _ in found.grouping] == ["worker"]


def test_known_metrics_cover_every_family() -> None:
    known = known_metrics()
    assert known["tpipe_http_requests_total"] == {"status"}
    assert {
        "tpipe_forward_latency_seconds_bucket",
        "tpipe_spool_oldest_age_seconds",
        "tpipe_broker_up",
    } <= set(known)
    assert "le" in known["tpipe_forward_latency_seconds_bucket"]
    assert known["tpipe_worker_lag_records"] == {"worker", "topic", "partition"}
