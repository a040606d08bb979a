"""PromQL in the deployment artefacts, read with a kept parser: ``promql-parser`` (GreptimeDB's Rust
port of Prometheus' own parser, Python bindings). Each expression must parse, and every series, label
matcher and grouping label it names must be one that ``plumbing.metrics`` exposes.

    problems = promql_problems('sum by (worker) (rate(tpipe_worker_dlq_total[5m]))', known_metrics())
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser as pq
import yaml
from prometheus_client.metrics import MetricWrapperBase

from plumbing import metrics as tmetrics

# Labels Prometheus adds to every scraped series (target labels, Kubernetes service discovery).
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "container", "service", "node", "endpoint"})
# Grafana's range variables stand for a duration, every other variable for a number.
_GRAFANA_RANGE = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}")
_GRAFANA_VAR = re.compile(r"\$\{?\w+\}?")


def known_metrics() -> dict[str, set[str]]:
    """Every series name tpipe exposes -> its labels: counters as ``_total``, histograms as
    ``_bucket`` (with ``le``), ``_sum`` and ``_count``, gauges by their name."""
    families = {f.name: f.type for f in tmetrics.REGISTRY.collect()}
    labels_of: dict[str, tuple[str, ...]] = {}
    for obj in vars(tmetrics).values():
        if isinstance(obj, MetricWrapperBase):
            fam = obj.describe()[0].name
            assert fam in families, f"{fam} is defined in plumbing.metrics but not registered in REGISTRY"
            labels_of[fam] = tuple(obj._labelnames)
    out: dict[str, set[str]] = {}
    for fam, typ in families.items():
        labels = set(labels_of.get(fam, ()))
        if typ == "counter":
            out[fam + "_total"] = labels
        elif typ == "histogram":
            out[fam + "_bucket"] = labels | {"le"}
            out[fam + "_sum"] = labels
            out[fam + "_count"] = labels
        else:
            out[fam] = labels
    return out


def parse(expr: str) -> pq.Expr:
    """The AST of ``expr`` (a Grafana query: its variables replaced first); ValueError if it does not parse."""
    return pq.parse(_GRAFANA_VAR.sub("1", _GRAFANA_RANGE.sub("5m", expr)))


@dataclass
class Uses:
    """What one expression refers to."""

    names: set[str] = field(default_factory=set)  # metric names of its selectors
    matchers: list[tuple[str | None, str]] = field(default_factory=list)  # (metric, label) of label matchers
    grouping: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # (label, metrics it applies to)


def _selector_names(node: pq.Expr) -> frozenset[str]:
    names: set[str] = set()

    def visit(n: pq.Expr) -> None:
        if isinstance(n, pq.VectorSelector) and n.name:
            names.add(n.name)

    pq.walk(node, visit)
    return frozenset(names)


def uses(expr: str) -> Uses:
    """The metric names, label matchers and grouping labels (``by``, ``without``, ``on``, ``ignoring``,
    ``group_left/right``) of ``expr``."""
    out = Uses()

    def visit(node: pq.Expr) -> None:
        if isinstance(node, pq.VectorSelector):
            if node.name:
                out.names.add(node.name)
            out.matchers += [(node.name, m.name) for m in node.matchers.matchers if m.name != "__name__"]
            if not node.name:
                out.matchers.append((None, "__name__"))
        elif isinstance(node, pq.AggregateExpr) and node.modifier is not None:
            scope = _selector_names(node.expr)
            out.grouping += [(label, scope) for label in node.modifier.labels]
        elif isinstance(node, pq.BinaryExpr) and node.modifier is not None:
            scope = _selector_names(node)
            matching = node.modifier.matching
            labels = [*(matching.labels if matching else ()), *(node.modifier.group_labels or ())]
            out.grouping += [(label, scope) for label in labels]

    pq.walk(parse(expr), visit)
    return out


def promql_problems(expr: str, known: dict[str, set[str]]) -> list[str]:
    """What is wrong with ``expr`` against the metrics tpipe exposes (``known_metrics()``); [] if nothing."""
    try:
        found = uses(expr)
    except ValueError as exc:
        return [f"does not parse: {exc}"]
    problems = [f"unknown metric {n!r}" for n in sorted(found.names - set(known))]
    if not found.names:
        problems.append("references no tpipe metric")
    for metric, label in found.matchers:
        if metric is None:
            problems.append("selector without a metric name")
        elif metric in known and label not in known[metric] | TARGET_LABELS:
            problems.append(f"{metric} has no label {label!r}")
    for label, scope in found.grouping:
        if label not in set().union(*(known.get(n, set()) for n in scope)) | TARGET_LABELS:
            problems.append(f"grouping label {label!r} is on none of {sorted(scope)}")
    return problems


# ---- where the PromQL is: the Grafana dashboard, the alert rules in docs/operations.md -------------
def dashboard_panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for p in items:
        yield p
        yield from dashboard_panels(p.get("panels", []))


def dashboard_exprs(dashboard: Path) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of the dashboard, templating queries included."""
    d = json.loads(dashboard.read_text())
    out = [
        (p.get("title", ""), t["expr"])
        for p in dashboard_panels(d["panels"])
        for t in p.get("targets", [])
        if "expr" in t
    ]
    for var in d.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"variable {var['name']}", q))
    return out


def doc_rule_groups(markdown: Path) -> list[dict[str, Any]]:
    """The Prometheus rule groups of the ```yaml blocks (with ``groups:``) of a Markdown document."""
    groups: list[dict[str, Any]] = []
    for body in re.findall(r"```yaml\n(.*?)```", markdown.read_text(), re.S):
        doc = yaml.safe_load(body)
        if isinstance(doc, dict) and "groups" in doc:
            groups.extend(doc["groups"])
    return groups


def doc_promql(markdown: Path) -> list[str]:
    """The expressions of a Markdown document: its ```promql blocks (one per paragraph) and the
    ``expr`` of its rule groups."""
    exprs: list[str] = []
    for body in re.findall(r"```promql\n(.*?)```", markdown.read_text(), re.S):
        exprs += [e.strip() for e in body.split("\n\n") if e.strip() and not e.strip().startswith("#")]
    exprs += [str(rule["expr"]) for group in doc_rule_groups(markdown) for rule in group["rules"]]
    return exprs
