"""The alert rules and PromQL in docs/operations.md: every expression parses and uses only series and
labels ``plumbing.metrics`` exposes; every rule is complete (name, severity, summary, a valid ``for``)
and its summary templates name only labels its expression keeps."""

from __future__ import annotations

import re

import promql_parser

from tests.support.deploy_files import OPERATIONS
from tests.support.promql import doc_promql, doc_rule_groups, known_metrics, promql_problems, uses


def test_operations_promql_uses_real_metrics() -> None:
    known = known_metrics()
    exprs = doc_promql(OPERATIONS)
    assert len(exprs) >= 6
    problems = [f"{e}: {p}" for e in exprs for p in promql_problems(e, known)]
    assert not problems, "\n".join(problems)
    used = set().union(*(uses(e).names for e in exprs))
    assert {
        "tpipe_http_requests_total",
        "tpipe_spool_oldest_age_seconds",
        "tpipe_spool_bytes",
        "tpipe_broker_up",
        "tpipe_forward_errors_total",
    } <= used


def test_alert_rules_are_complete_and_their_templates_name_kept_labels() -> None:
    groups = doc_rule_groups(OPERATIONS)
    assert {g["name"] for g in groups} >= {"tpipe-webhook", "tpipe-workers"}
    rules = [rule for g in groups for rule in g["rules"]]
    names = [r.get("alert") for r in rules]
    assert all(names) and len(names) == len(set(names)), f"every rule an alert with its own name: {names}"
    for rule in rules:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name
        assert rule.get("annotations", {}).get("summary"), f"{name}: a summary for the notification"
        if "for" in rule:
            assert promql_parser.parse_duration(str(rule["for"])).total_seconds() > 0, name
        kept = {label for label, _ in uses(str(rule["expr"])).grouping}
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in kept, f"{name}: {{{{ $labels.{label} }}}} is not a label of the alert ({sorted(kept)})"


def test_operations_doc_names_the_operator_commands() -> None:
    text = OPERATIONS.read_text()
    for phrase in ("/readyz", "tpipe token new", "tpipe token revoke", "SIGHUP", "TPIPE_DURABILITY"):
        assert phrase in text, phrase
