"""Static checks of the deployment files (no Docker engine, no cluster needed).

deploy/Dockerfile, deploy/compose.yaml, deploy/k8s/*.yaml, deploy/grafana/tpipe-dashboard.json and the
PromQL in docs/operations.md are checked against the code they deploy: the receiver's routes and
settings defaults, the workers' settings, the CLI's sub-commands and the metric names in
``plumbing.metrics``. Nothing is skipped: where a piece of code does not exist yet, the check falls back to
the values written in docs/internal-contracts.md.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.settings import IngestSettings
from plumbing import metrics as tmetrics
from plumbing.settings import KafkaSettings
from tests.support.paths import REPO as REPO_ROOT

ROOT = REPO_ROOT
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
DASHBOARD = DEPLOY / "grafana" / "tpipe-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

IMAGE_NAME = "teslemetry-pipeline"
RECEIVER = "tpipe-receiver"
# worker name (``tpipe consume <name>``) -> (package under consumers/, metrics port per the contract)
WORKERS = {"telemetry": ("lake", 9101), "alerts": ("alerts", 9102), "credits": ("credits", 9103)}
# Environment variables that are not settings fields: read by tpipe.cli and by the Dockerfile HEALTHCHECK.
NON_SETTINGS_ENV = {"TPIPE_LOG_LEVEL", "TPIPE_HEALTHCHECK_URL"}
# Worker options not in WorkerSettings that a worker's own settings class adds (used until it exists).
PENDING_WORKER_FIELDS = {
    "telemetry": {"catalog_uri", "warehouse"},
    "alerts": {"alerts_db_url"},
    "credits": {"credits_db_url"},
}
# The variable that points each worker at its database / lake catalog (PostgreSQL in deployments).
DB_ENV = {
    "telemetry": "TPIPE_CATALOG_URI",
    "alerts": "TPIPE_ALERTS_DB_URL",
    "credits": "TPIPE_CREDITS_DB_URL",
}


# ---------------------------------------------------------------------------------------------------
# loading


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in _k8s_files():
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def _k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in _k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = _k8s(kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name} in deploy/k8s, found {len(found)}"
    return found[0]


def _workloads() -> list[dict[str, Any]]:
    return [
        d for d in _k8s_docs() if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
    ]


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = _pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    return containers[0]


def _configmap() -> dict[str, str]:
    return _one("ConfigMap", "tpipe-config")["data"]


def _secret_data(name: str) -> dict[str, str]:
    secret = _one("Secret", name)
    data = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        data[key] = base64.b64decode(value).decode()
    return data


def _container_env(workload: dict[str, Any]) -> dict[str, str]:
    """The environment a container sees: envFrom ConfigMaps/Secrets, then env (which wins)."""
    c = _container(workload)
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update(_one("ConfigMap", src["configMapRef"]["name"])["data"])
        elif "secretRef" in src:
            env.update(_secret_data(src["secretRef"]["name"]))
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]
            if "secretKeyRef" in ref:
                env[item["name"]] = _secret_data(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                env[item["name"]] = _one("ConfigMap", ref["configMapKeyRef"]["name"])["data"][
                    ref["configMapKeyRef"]["key"]
                ]
            else:
                env[item["name"]] = "<" + next(iter(ref)) + ">"
    return env


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _port_number(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (number or container port name) as a number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"container {container['name']} has no port named {port!r}")


def _duration_s(text: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(text))
    assert m and any(m.groups()), f"unparsable duration {text!r}"
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0)


def _quantity_bytes(text: str) -> int:
    units = {
        "Ki": 1 << 10,
        "Mi": 1 << 20,
        "Gi": 1 << 30,
        "Ti": 1 << 40,
        "K": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    m = re.fullmatch(r"(\d+)([KMGT]i?)?", text)
    assert m, f"unparsable quantity {text!r}"
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


def _app_routes() -> dict[str, set[str]]:
    """Path -> methods, read from the Starlette app the receiver serves."""
    from ingest.app import create_app

    app = create_app(IngestSettings(token=["test-token"], validate_events=False))
    return {route.path: set(route.methods or ()) for route in app.routes}


def _worker_settings_class(worker: str) -> type[KafkaSettings]:
    """The worker's own settings class if its package defines one, else the shared WorkerSettings."""
    from consumers.runtime.settings import WorkerSettings

    pkg = WORKERS[worker][0]
    for mod_name in (f"consumers.{pkg}.settings", f"consumers.{pkg}.cli", f"consumers.{pkg}.worker"):
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name and mod_name.startswith(exc.name):
                continue
            raise
        classes = [
            obj
            for obj in vars(mod).values()
            if isinstance(obj, type)
            and issubclass(obj, WorkerSettings)
            and obj is not WorkerSettings
            and obj.__module__ == mod.__name__
        ]
        if classes:
            assert len(classes) == 1, f"{mod_name}: several WorkerSettings subclasses {classes}"
            return classes[0]
    return WorkerSettings


def _worker_port(worker: str) -> int:
    cls = _worker_settings_class(worker)
    default = cls.model_fields["metrics_port"].default
    return int(default) if default else WORKERS[worker][1]


def _worker_fields(worker: str) -> set[str]:
    from consumers.runtime.settings import WorkerSettings

    cls = _worker_settings_class(worker)
    fields = set(cls.model_fields)
    if cls is WorkerSettings:
        fields |= PENDING_WORKER_FIELDS[worker]
    return fields


def _registered_workers() -> set[str]:
    from tpipe.cli import build_parser

    parser = build_parser(["consume"])
    sub = next(a for a in parser._actions if a.dest == "command")
    consume = sub.choices["consume"]  # type: ignore[index]
    consume_sub = next(a for a in consume._actions if a.dest == "worker")
    return set(consume_sub.choices)  # type: ignore[arg-type]


def _prestop_sleep_s(container: dict[str, Any]) -> float:
    pre = (container.get("lifecycle") or {}).get("preStop")
    if not pre:
        return 0.0
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = pre["exec"]["command"]
    assert cmd[0] == "sleep", f"unexpected preStop command {cmd}"
    return float(cmd[1])


# ---------------------------------------------------------------------------------------------------
# PromQL: which metric names, functions and labels an expression uses

_PROMQL_FUNCS = {
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "delta",
    "deriv",
    "floor",
    "group",
    "histogram_quantile",
    "increase",
    "irate",
    "label_replace",
    "last_over_time",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "stddev",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "vector",
}
_PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
# Labels Prometheus adds to every scraped series (target labels, Kubernetes service discovery).
_TARGET_LABELS = {"instance", "job", "namespace", "pod", "container", "service", "node", "endpoint"}


def _known_metrics() -> dict[str, set[str]]:
    """Every series name tpipe exposes -> its labels: counters as ``_total``, histograms as
    ``_bucket``/``_sum``/``_count``, gauges by their name."""
    from prometheus_client.metrics import MetricWrapperBase

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
        elif typ == "gauge":
            out[fam] = labels
        elif typ == "histogram":
            out[fam + "_bucket"] = labels | {"le"}
            out[fam + "_sum"] = labels
            out[fam + "_count"] = labels
        else:
            out[fam] = labels
    return out


def _promql_parts(expr: str) -> tuple[set[str], set[str], list[tuple[str, str]], list[str]]:
    """(metric names, functions, (metric, matcher label) pairs, grouping labels) used by ``expr``."""
    text = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors, [5m] / [$__rate_interval]
    text = re.sub(r"\$\{?\w+\}?", " 1 ", text)  # Grafana variables stand for numbers here
    matchers: list[tuple[str, str]] = []

    def _sel(m: re.Match[str]) -> str:
        name = m.group(1) or ""
        body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', m.group(2))
        for part in filter(None, (p.strip() for p in body.split(","))):
            lm = re.fullmatch(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*""', part)
            assert lm, f"cannot parse label matcher {part!r} in {expr!r}"
            matchers.append((name, lm.group(1)))
        return f" {name} "

    text = re.sub(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}", _sel, text)
    grouping: list[str] = []

    def _grp(m: re.Match[str]) -> str:
        grouping.extend(lbl.strip() for lbl in m.group(2).split(",") if lbl.strip())
        return " "

    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", _grp, text)
    assert '"' not in text, f"unexpected string literal in {expr!r}"
    text = re.sub(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", text)
    names: set[str] = set()
    funcs: set[str] = set()
    for m in re.finditer(r"[a-zA-Z_:][\w:]*", text):
        word = m.group(0)
        if re.match(r"\s*\(", text[m.end() :]):
            funcs.add(word)
        elif word not in _PROMQL_KEYWORDS:
            names.add(word)
    names |= {n for n, _ in matchers if n}
    return names, funcs, matchers, grouping


def _promql_problems(expr: str, known: dict[str, set[str]]) -> list[str]:
    names, funcs, matchers, grouping = _promql_parts(expr)
    problems = [f"unknown metric {n!r}" for n in sorted(names - set(known))]
    problems += [f"unknown function {f!r}" for f in sorted(funcs - _PROMQL_FUNCS)]
    if not names:
        problems.append("references no tpipe metric")
    for metric, label in matchers:
        if not metric:
            problems.append(f"selector without a metric name (label {label!r})")
        elif metric in known and label not in known[metric] | _TARGET_LABELS:
            problems.append(f"{metric} has no label {label!r}")
    available = set().union(*(known.get(n, set()) for n in names)) | _TARGET_LABELS
    problems += [
        f"grouping label {lbl!r} is on none of {sorted(names)}" for lbl in grouping if lbl not in available
    ]
    return problems


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from _panels(p.get("panels", []))


def _dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of the dashboard, templating queries included."""
    d = _dashboard()
    out = [
        (p.get("title", ""), t["expr"])
        for p in _panels(d["panels"])
        for t in p.get("targets", [])
        if "expr" in t
    ]
    for var in d.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"variable {var['name']}", q))
    return out


# ---------------------------------------------------------------------------------------------------
# the PromQL checker itself (so that the dashboard / docs checks below can fail)


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
        (
            'sum(rate(tpipe_http_requests_total{code="500"}[5m]))',
            "tpipe_http_requests_total has no label 'code'",
        ),
        (
            "sum by (worker) (tpipe_spool_bytes)",
            "grouping label 'worker' is on none of ['tpipe_spool_bytes']",
        ),
        ("rat(tpipe_forwarded_events_total[5m])", "unknown function 'rat'"),
        ('{__name__="tpipe_spool_bytes"}', "selector without a metric name"),
        ("vector(1)", "references no tpipe metric"),
    ],
)
def test_promql_checker_rejects(expr: str, problem: str) -> None:
    assert any(p.startswith(problem) for p in _promql_problems(expr, _known_metrics())), _promql_problems(
        expr, _known_metrics()
    )


def test_promql_checker_accepts_valid_expressions() -> None:
    known = _known_metrics()
    for expr in (
        'sum(rate(tpipe_http_requests_total{status!~"2.."}[$__rate_interval])) / clamp_min(sum(rate(tpipe_http_requests_total[5m])), 1e-9)',
        "histogram_quantile(0.99, sum by (worker, le) (rate(tpipe_worker_commit_seconds_bucket[5m])))",
        "max by (worker, topic, partition) (tpipe_worker_lag_records) > 1000",
        "max(tpipe_spool_bytes) / $spool_max_bytes",
    ):
        assert _promql_problems(expr, known) == [], expr


def test_known_metrics_cover_every_family() -> None:
    known = _known_metrics()
    assert "tpipe_http_requests_total" in known and known["tpipe_http_requests_total"] == {"status"}
    assert {
        "tpipe_forward_latency_seconds_bucket",
        "tpipe_spool_oldest_age_seconds",
        "tpipe_broker_up",
    } <= set(known)
    assert known["tpipe_worker_lag_records"] == {"worker", "topic", "partition"}


# ---------------------------------------------------------------------------------------------------
# YAML structure


def test_every_yaml_file_parses_into_mappings() -> None:
    files = [COMPOSE, *K8S.glob("*.yaml"), *K8S.glob("*.yml")]
    assert len(files) >= 8
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"


def test_k8s_objects_have_api_version_kind_and_name() -> None:
    docs = _k8s_docs()
    kinds = {d.get("kind") for d in docs}
    assert {"StatefulSet", "Deployment", "Service", "PodDisruptionBudget", "Secret", "ConfigMap"} <= kinds
    for d in docs:
        assert isinstance(d.get("apiVersion"), str) and d["apiVersion"], d
        assert isinstance(d.get("kind"), str) and d["kind"], d
        assert isinstance(d.get("metadata", {}).get("name"), str) and d["metadata"]["name"], d
        assert "namespace" not in d["metadata"], (
            f"{d['kind']}/{d['metadata']['name']}: the namespace comes from kustomization.yaml"
        )
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate objects: {keys}"


def test_kustomization_lists_exactly_the_manifests() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    assert sorted(kust["resources"]) == sorted(p.name for p in _k8s_files())
    assert kust.get("namespace"), "kustomization.yaml sets the namespace"
    namespaces = [d["metadata"]["name"] for d in _k8s("Namespace")]
    assert namespaces in ([], [kust["namespace"]])


def test_workloads_have_image_args_resources_and_security() -> None:
    workloads = _workloads()
    assert sorted(w["metadata"]["name"] for w in workloads) == sorted(
        [RECEIVER, *(f"tpipe-{w}" for w in WORKERS)]
    )
    for w in workloads:
        name = w["metadata"]["name"]
        pod = _pod_spec(w)
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items(), (
            f"{name}: selector must match the pod labels"
        )
        c = _container(w)
        assert c.get("image"), name
        assert c.get("command") or c.get("args"), f"{name}: container needs command or args"
        res = c.get("resources", {})
        assert res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"), (
            f"{name}: requests"
        )
        assert res.get("limits", {}).get("memory"), f"{name}: memory limit"
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == _dockerfile_uid(), (
            f"{name}: runAsUser = the image's USER"
        )
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        if c["securityContext"].get("readOnlyRootFilesystem"):
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: read-only root needs a writable /tmp"


def test_container_args_are_tpipe_commands() -> None:
    registered = _registered_workers()
    from tpipe.cli import build_parser

    receiver = _container(_one("StatefulSet", RECEIVER))
    assert "command" not in receiver, "keep the image's ENTRYPOINT (tpipe)"
    assert receiver["args"] == ["serve"]
    assert build_parser(receiver["args"]).parse_args(receiver["args"]).command == "serve"
    for worker in WORKERS:
        c = _container(_one("Deployment", f"tpipe-{worker}"))
        assert "command" not in c, "keep the image's ENTRYPOINT (tpipe)"
        assert c["args"] == ["consume", worker]
        if worker in registered:  # once consumers.<pkg>.cli exists the parser must accept it
            assert build_parser(c["args"]).parse_args(c["args"]).worker == worker


# ---------------------------------------------------------------------------------------------------
# receiver: probes, ports, spool volume, shutdown, services, PDB


def _receiver_ports(sts: dict[str, Any]) -> tuple[int, int]:
    """(webhook port, ops port) the receiver container is configured with."""
    env = _container_env(sts)
    webhook, ops = int(env["TPIPE_PORT"]), int(env["TPIPE_OPS_PORT"])
    assert webhook != ops
    return webhook, ops


def test_receiver_probes_match_the_app_routes_and_port() -> None:
    from ingest.http.limits import OPS_PATHS

    routes = _app_routes()
    assert {"/webhook", "/healthz", "/readyz", "/metrics"} <= set(routes)
    assert OPS_PATHS < set(routes) and "/webhook" not in OPS_PATHS
    sts = _one("StatefulSet", RECEIVER)
    c = _container(sts)
    port = IngestSettings.model_fields["port"].default
    assert port == 8080
    webhook_port, ops_port = _receiver_ports(sts)
    assert webhook_port == port
    assert sorted(p["containerPort"] for p in c["ports"]) == sorted([webhook_port, ops_port])
    assert _container_env(sts)["TPIPE_HOST"] == "0.0.0.0", "the receiver must listen beyond loopback"
    assert "TPIPE_OPS_HOST" not in _container_env(sts), "probes and scrapes come from outside the pod"
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe_name, path in expected.items():
        probe = c[probe_name]["httpGet"]
        assert probe["path"] == path
        assert "GET" in routes[probe["path"]]
        # with an ops port the ops paths answer 404 on the webhook port: probes must use the ops port
        assert _port_number(c, probe["port"]) == ops_port, probe_name


def test_prometheus_annotations_point_at_metrics_endpoints() -> None:
    routes = _app_routes()
    for w in _workloads():
        ann = w["spec"]["template"]["metadata"].get("annotations", {})
        c = _container(w)
        assert ann.get("prometheus.io/scrape") == "true", w["metadata"]["name"]
        assert int(ann["prometheus.io/port"]) in [p["containerPort"] for p in c["ports"]]
        assert ann["prometheus.io/path"] == "/metrics"
    sts = _one("StatefulSet", RECEIVER)
    ann = sts["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/path"] in routes
    assert int(ann["prometheus.io/port"]) == _receiver_ports(sts)[1], "metrics are on the ops port"


def test_only_the_webhook_is_public_and_probes_use_the_ops_port() -> None:
    """The Ingress routes /webhook alone, to a Service that targets the webhook port alone; the ops port
    (health, metrics) is reached only by probes and scraping."""
    sts = _one("StatefulSet", RECEIVER)
    c = _container(sts)
    webhook_port, ops_port = _receiver_ports(sts)
    services = {s["metadata"]["name"]: s for s in _k8s("Service")}
    ingresses = _k8s("Ingress")
    assert ingresses, "an example Ingress for the webhook"
    for ing in ingresses:
        spec = ing["spec"]
        assert "defaultBackend" not in spec, "a default backend would publish every path"
        assert spec.get("tls"), "Teslemetry must reach the webhook over HTTPS"
        paths = [path for rule in spec["rules"] for path in rule["http"]["paths"]]
        assert paths
        for path in paths:
            assert (path["path"], path["pathType"]) == ("/webhook", "Exact"), path
            ref = path["backend"]["service"]
            svc = services[ref["name"]]
            assert svc["spec"].get("clusterIP") != "None", "not the headless Service"
            target = [
                sp for sp in svc["spec"]["ports"]
                if sp.get("name") == ref["port"].get("name") or sp["port"] == ref["port"].get("number")
            ]
            assert len(target) == 1
            assert _port_number(c, target[0]["targetPort"]) == webhook_port
            # the Service behind the Ingress carries nothing but the webhook port
            assert [_port_number(c, sp["targetPort"]) for sp in svc["spec"]["ports"]] == [webhook_port]
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert _port_number(c, c[name]["httpGet"]["port"]) == ops_port, name
    ann = sts["spec"]["template"]["metadata"]["annotations"]
    assert int(ann["prometheus.io/port"]) == ops_port


def test_statefulset_keeps_a_spool_volume_per_replica() -> None:
    sts = _one("StatefulSet", RECEIVER)
    env = _container_env(sts)
    spool_dir = env["TPIPE_SPOOL_DIR"]
    assert spool_dir == "/var/lib/tpipe/spool" == _dockerfile_env()["TPIPE_SPOOL_DIR"]
    templates = {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m for m in _container(sts)["volumeMounts"]}
    assert spool_dir in mounts, f"nothing mounted at TPIPE_SPOOL_DIR={spool_dir}"
    claim = templates.get(mounts[spool_dir]["name"])
    assert claim is not None, (
        "the spool must be a volumeClaimTemplate (one PVC per replica), not a shared volume"
    )
    assert not mounts[spool_dir].get("readOnly")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    size = _quantity_bytes(claim["spec"]["resources"]["requests"]["storage"])
    max_bytes = int(env.get("TPIPE_SPOOL_MAX_BYTES", IngestSettings.model_fields["spool_max_bytes"].default))
    segment = int(
        env.get("TPIPE_SPOOL_SEGMENT_BYTES", IngestSettings.model_fields["spool_segment_bytes"].default)
    )
    assert size >= max_bytes + segment, "the PVC must hold TPIPE_SPOOL_MAX_BYTES plus one segment"
    policy = sts["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}, (
        "a spool PVC may hold unforwarded events"
    )
    assert env["TPIPE_DURABILITY"] in ("spool", "broker")
    # the spool is not also an emptyDir / shared volume
    assert mounts[spool_dir]["name"] not in {v["name"] for v in _pod_spec(sts).get("volumes", [])}


def test_receiver_grace_period_outlasts_the_drain() -> None:
    sts = _one("StatefulSet", RECEIVER)
    env = _container_env(sts)
    drain = float(env.get("TPIPE_DRAIN_TIMEOUT_S", IngestSettings.model_fields["drain_timeout_s"].default))
    grace = _pod_spec(sts)["terminationGracePeriodSeconds"]
    # uvicorn waits up to drain_timeout_s for in-flight requests, then the lifespan drains the spool for
    # up to drain_timeout_s (ingest/cli.py, ingest/app.py); preStop runs before SIGTERM.
    assert grace > _prestop_sleep_s(_container(sts)) + 2 * drain
    from consumers.runtime.settings import WorkerSettings

    for worker in WORKERS:
        dep = _one("Deployment", f"tpipe-{worker}")
        wdrain = float(
            _container_env(dep).get(
                "TPIPE_DRAIN_TIMEOUT_S", WorkerSettings.model_fields["drain_timeout_s"].default
            )
        )
        assert _pod_spec(dep)["terminationGracePeriodSeconds"] > wdrain, worker


def test_receiver_services_and_pdb_select_the_receiver_pods() -> None:
    sts = _one("StatefulSet", RECEIVER)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    c = _container(sts)
    services = {s["metadata"]["name"]: s for s in _k8s("Service")}
    svc = services[RECEIVER]
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    [port] = svc["spec"]["ports"]
    assert port["port"] == 80
    assert _port_number(c, port["targetPort"]) == 8080
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    pdbs = [
        p
        for p in _k8s("PodDisruptionBudget")
        if p["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert len(pdbs) == 1
    assert pdbs[0]["spec"]["minAvailable"] == 1
    assert sts["spec"]["replicas"] > pdbs[0]["spec"]["minAvailable"], "else the PDB blocks every node drain"


def test_tokens_secret_is_a_tokens_file_mounted_where_tpipe_tokens_file_points(tmp_path: Path) -> None:
    from ingest.tokens import TokensFile

    sts = _one("StatefulSet", RECEIVER)
    env = _container_env(sts)
    tokens_path = Path(env["TPIPE_TOKENS_FILE"])
    assert tokens_path == Path("/etc/tpipe/tokens.json")
    mounts = [m for m in _container(sts)["volumeMounts"] if m["mountPath"] == str(tokens_path.parent)]
    assert len(mounts) == 1 and "subPath" not in mounts[0], (
        "mount the directory: subPath mounts never see updates"
    )
    [vol] = [v for v in _pod_spec(sts)["volumes"] if v["name"] == mounts[0]["name"]]
    data = _secret_data(vol["secret"]["secretName"])
    assert set(data) == {tokens_path.name}
    sample = tmp_path / tokens_path.name
    sample.write_text(data[tokens_path.name])
    assert isinstance(json.loads(sample.read_text())["tokens"], list)
    assert TokensFile(sample).load() == []  # placeholder: no token ships with the manifests


def test_secrets_stay_out_of_the_configmap_and_every_reference_resolves() -> None:
    cm = _configmap()
    assert not [k for k in cm if re.search(r"PASSWORD|SECRET|TOKEN$|_URL$|_URI$", k)], (
        "secrets belong in a Secret"
    )
    assert not [v for v in cm.values() if re.search(r"://[^/@\s]+:[^/@\s]+@", v)], (
        "credentials in a ConfigMap URL"
    )
    for w in _workloads():
        env = _container_env(w)  # raises KeyError on a dangling secretKeyRef / configMapRef
        assert "TPIPE_KAFKA_SASL_PASSWORD" in env, f"{w['metadata']['name']}: SASL password from the Secret"
        c = _container(w)
        assert not [e for e in c.get("env", []) if "PASSWORD" in e["name"] and "value" in e], (
            "password as plain env"
        )
        for v in _pod_spec(w).get("volumes", []):
            if "secret" in v:
                _one("Secret", v["secret"]["secretName"])
            if "configMap" in v:
                _one("ConfigMap", v["configMap"]["name"])
    sasl = _secret_data("tpipe-kafka-credentials")
    assert set(sasl) == {"TPIPE_KAFKA_SASL_PASSWORD"}
    assert cm["TPIPE_KAFKA_SECURITY_PROTOCOL"].startswith("SASL_")


def test_configmap_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    cm = _configmap()
    for key in list(cm):
        if key.startswith("TPIPE_"):
            monkeypatch.setenv(key, cm[key])
    s = IngestSettings(token=["x"])  # raises on a bad value (e.g. an unknown durability or protocol)
    assert str(s.spool_dir) == cm["TPIPE_SPOOL_DIR"]
    assert s.kafka == cm["TPIPE_KAFKA"]
    for worker in WORKERS:
        cls = _worker_settings_class(worker)
        cls()  # type: ignore[call-arg]


def test_env_names_are_settings_fields() -> None:
    ingest_fields = set(IngestSettings.model_fields)

    def check(names: set[str], fields: set[str], where: str) -> None:
        unknown = {
            n
            for n in names
            if n.startswith("TPIPE_")
            and n not in NON_SETTINGS_ENV
            and n[len("TPIPE_") :].lower() not in fields
        }
        assert not unknown, f"{where}: {sorted(unknown)} are not settings (typo, or renamed field?)"

    all_fields = ingest_fields.union(*(_worker_fields(w) for w in WORKERS))
    check(set(_configmap()), all_fields, "ConfigMap tpipe-config")
    check(set(_container_env(_one("StatefulSet", RECEIVER))), ingest_fields | all_fields, "receiver")
    compose = _compose()["services"]
    check(set(_compose_env(compose["receiver"])), ingest_fields, "compose receiver")
    check(set(_dockerfile_env()), ingest_fields, "Dockerfile ENV")
    for worker in WORKERS:
        fields = _worker_fields(worker)
        own = {e["name"] for e in _container(_one("Deployment", f"tpipe-{worker}")).get("env", [])}
        check(own, fields, f"k8s {worker}")
        check(set(_compose_env(compose[worker])), fields, f"compose {worker}")
    # a sanity check that check() can fail
    with pytest.raises(AssertionError):
        check({"TPIPE_SPOOL_DIRECTORY"}, ingest_fields, "self-test")


def test_worker_metrics_ports_and_liveness() -> None:
    compose = _compose()["services"]
    for worker in WORKERS:
        port = _worker_port(worker)
        assert port == WORKERS[worker][1], f"{worker}: contract says {WORKERS[worker][1]}"
        dep = _one("Deployment", f"tpipe-{worker}")
        c = _container(dep)
        env = _container_env(dep)
        assert [p["containerPort"] for p in c["ports"]] == [port]
        assert int(env["TPIPE_METRICS_PORT"]) == port
        assert env.get("TPIPE_METRICS_ADDR", "0.0.0.0") == "0.0.0.0"
        live = c["livenessProbe"]["httpGet"]
        assert live["path"] == "/metrics" and _port_number(c, live["port"]) == port
        cenv = _compose_env(compose[worker])
        assert int(cenv["TPIPE_METRICS_PORT"]) == port
        assert cenv["TPIPE_HEALTHCHECK_URL"] == f"http://127.0.0.1:{port}/metrics"
    from consumers.runtime.settings import WorkerSettings

    assert WorkerSettings.model_fields["metrics_addr"].default == "0.0.0.0", (
        "probes come from outside the pod"
    )


def test_worker_databases_come_from_the_secret() -> None:
    for worker, key_env in DB_ENV.items():
        c = _container(_one("Deployment", f"tpipe-{worker}"))
        [item] = [e for e in c["env"] if e["name"] == key_env]
        assert "secretKeyRef" in item["valueFrom"], f"{worker}: {key_env} carries a password"
        assert _container_env(_one("Deployment", f"tpipe-{worker}"))[key_env].startswith("postgresql://")
    urls = [
        _secret_data("tpipe-databases")[k] for k in ("alerts-db-url", "credits-db-url", "lake-catalog-uri")
    ]
    assert len({u.rsplit("/", 1)[1] for u in urls}) == 3, "one database each"


# ---------------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore


def _dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _dockerfile_stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for ln in _dockerfile_lines():
        if ln.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ln)
    return stages


def _final_stage(instr: str) -> list[str]:
    return [
        ln[len(instr) + 1 :].strip() for ln in _dockerfile_stages()[-1] if ln.upper().startswith(instr + " ")
    ]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _final_stage("ENV"):
        for tok in shlex.split(args):
            k, _, v = tok.partition("=")
            env[k] = v
    return env


def _dockerfile_uid() -> int:
    [user] = _final_stage("USER")
    return int(user.split(":")[0])


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    lines = _dockerfile_lines()
    args = dict(re.match(r"ARG (\w+)=(\S+)", ln).groups() for ln in lines if re.match(r"ARG \w+=", ln))  # type: ignore[union-attr]
    froms = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ln.split()[1])
        for ln in lines
        if ln.upper().startswith("FROM ")
    ]
    assert len(froms) >= 2, "multi-stage: a builder and a runtime"
    assert all(f == "python:3.11-slim" for f in froms), froms
    assert re.search(r"FROM \S+ AS builder", "\n".join(lines), re.I)
    final = "\n".join(_dockerfile_stages()[-1])
    assert re.search(r"COPY --from=builder /opt/venv /opt/venv", final), "the runtime gets the built venv"
    assert not re.search(r"\bpip3? (install|wheel)\b", final), "no pip in the runtime stage"
    builder = "\n".join(_dockerfile_stages()[0])
    assert "pip wheel" in builder and "pip install" in builder


def test_dockerfile_runtime_user_port_entrypoint_and_healthcheck() -> None:
    uid = _dockerfile_uid()
    assert uid != 0 and uid == 10001
    env = _dockerfile_env()
    ops_port = int(env["TPIPE_OPS_PORT"])
    assert _final_stage("EXPOSE") == [f'{IngestSettings.model_fields["port"].default} {ops_port}']
    assert json.loads(_final_stage("ENTRYPOINT")[0]) == ["tpipe"]
    assert "tpipe" in _pyproject()["project"]["scripts"]
    assert json.loads(_final_stage("CMD")[0]) == ["serve"]
    assert env["TPIPE_HOST"] == "0.0.0.0"
    assert env["TPIPE_SPOOL_DIR"] == "/var/lib/tpipe/spool"
    assert json.loads(_final_stage("VOLUME")[0]) == [env["TPIPE_SPOOL_DIR"]]
    [health] = _final_stage("HEALTHCHECK")
    assert "CMD" in health and "urllib.request" in health
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", health + " " + env["TPIPE_HEALTHCHECK_URL"])
    assert url and int(url.group(1)) == ops_port and url.group(2) in _app_routes(), "health is on the ops port"
    assert [ln for ln in _final_stage("WORKDIR")], "WORKDIR"


def test_dockerfile_copies_what_the_wheel_build_needs() -> None:
    py = _pyproject()
    wheel = py["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", py["project"]["readme"], *wheel["packages"], *wheel.get("force-include", {})}
    copied: set[str] = set()
    for ln in _dockerfile_stages()[0]:
        if ln.upper().startswith("COPY ") and "--from" not in ln:
            parts = ln.split()[1:-1]
            copied.update(p.rstrip("/") for p in parts)
    assert needed <= copied, f"not copied into the builder: {needed - copied}"
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: no such path"
    ignore = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore is an allow-list"
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    assert copied <= allowed, f"excluded from the build context: {copied - allowed}"
    assert not {"tests", ".venv", "var", ".git"} & allowed


# ---------------------------------------------------------------------------------------------------
# compose


def test_compose_has_every_service_with_images_and_dependencies() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "receiver", *WORKERS} <= set(services)
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck") or dep in {"receiver", *WORKERS}, (
                    f"{dep} needs a healthcheck"
                )
    assert services["receiver"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for worker in WORKERS:
        deps = services[worker]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert services[worker]["command"] == ["consume", worker]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert "receiver" not in deps, "workers are independent of the receiver"
    assert services["receiver"]["command"] == ["serve"]


def test_image_names_are_consistent_across_compose_and_k8s() -> None:
    version = _pyproject()["project"]["version"]
    expected = f"{IMAGE_NAME}:{version}"
    compose = _compose()
    tpipe_services = ["receiver", *WORKERS]
    for name in tpipe_services:
        svc = compose["services"][name]
        assert svc["image"] == expected, name
        build = svc["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, "build context = repository root"
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
    for w in _workloads():
        assert _container(w)["image"] == expected, w["metadata"]["name"]
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for img in kust.get("images", []):
        assert img["name"] == IMAGE_NAME and img.get("newTag", version) == version


def test_compose_kafka_is_kraft_with_single_node_settings() -> None:
    services = _compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = _compose_env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == [node]
    ctrl = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = {item.split("://")[0]: item.split("://")[1] for item in env["KAFKA_LISTENERS"].split(",")}
    assert ctrl in listeners and voters[0].split(":")[-1] == listeners[ctrl].split(":")[-1]
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocol_map)
    cluster_id = env["CLUSTER_ID"]
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    assert len(cluster_id) == 22 and len(raw) == 16
    assert base64.urlsafe_b64encode(raw).decode().rstrip("=") == cluster_id, (
        "CLUSTER_ID must round-trip (Kafka Uuid)"
    )
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    data_dir = env["KAFKA_LOG_DIRS"]
    assert any(str(v).split(":")[1] == data_dir for v in kafka["volumes"]), "Kafka data on a volume"
    advertised = {item.split("://")[1] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name in ("receiver", *WORKERS):
        assert _compose_env(services[name])["TPIPE_KAFKA"] in advertised, name
    assert "healthcheck" in kafka


def test_compose_receiver_spool_volume_healthcheck_and_grace() -> None:
    compose = _compose()
    rec = compose["services"]["receiver"]
    env = _compose_env(rec)
    spool = env["TPIPE_SPOOL_DIR"]
    volumes = [v.split(":") for v in rec["volumes"]]
    named = [src for src, dst, *_ in volumes if dst == spool]
    assert named, "the receiver's spool must be on a volume"
    assert named[0] in compose["volumes"], "a named volume (survives container recreation)"
    assert env["TPIPE_HOST"] == "0.0.0.0"
    ops_port = int(env["TPIPE_OPS_PORT"])
    assert int(env["TPIPE_PORT"]) == 8080
    ports = [str(p) for p in rec["ports"]]
    assert "8080:8080" in ports
    assert f"127.0.0.1:{ops_port}:{ops_port}" in ports, "the ops port is published on the host's loopback only"
    test = " ".join(rec["healthcheck"]["test"])
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", test)
    assert m and int(m.group(1)) == ops_port and m.group(2) in _app_routes()
    assert env["TPIPE_HEALTHCHECK_URL"] == f"http://127.0.0.1:{ops_port}/healthz"
    drain = float(env.get("TPIPE_DRAIN_TIMEOUT_S", IngestSettings.model_fields["drain_timeout_s"].default))
    assert _duration_s(rec["stop_grace_period"]) > 2 * drain
    from consumers.runtime.settings import WorkerSettings

    for worker in WORKERS:
        wenv = _compose_env(compose["services"][worker])
        wdrain = float(
            wenv.get("TPIPE_DRAIN_TIMEOUT_S", WorkerSettings.model_fields["drain_timeout_s"].default)
        )
        assert _duration_s(compose["services"][worker]["stop_grace_period"]) > wdrain, worker


def test_compose_postgres_serves_the_worker_databases() -> None:
    compose = _compose()
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "healthcheck" in pg and any(":/var/lib/postgresql/data" in str(v) for v in pg["volumes"])
    init_sql = " ".join(compose["configs"][c["source"]]["content"] for c in pg["configs"])
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql)) | {pg["environment"]["POSTGRES_DB"]}
    for worker, key in DB_ENV.items():
        url = _compose_env(compose["services"][worker])[key]
        m = re.fullmatch(r"postgresql://(\w+):[^@]+@postgres:5432/(\w+)", url)
        assert m, f"{worker}: {url}"
        assert m.group(1) == pg["environment"]["POSTGRES_USER"]
        assert m.group(2) in created, f"{worker}: database {m.group(2)} is never created"


# ---------------------------------------------------------------------------------------------------
# Grafana dashboard and the PromQL in docs/operations.md


def test_dashboard_is_valid_grafana_json() -> None:
    d = _dashboard()
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    panels = list(_panels(d["panels"]))
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


def test_dashboard_uses_only_metrics_from_tpipe_metrics() -> None:
    known = _known_metrics()
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    problems = [f"{title}: {expr}: {p}" for title, expr in exprs for p in _promql_problems(expr, known)]
    assert not problems, "\n".join(problems)


def test_dashboard_covers_what_operators_need() -> None:
    used = set().union(*(_promql_parts(e)[0] for _, e in _dashboard_exprs()))
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
    exprs = [e for _, e in _dashboard_exprs()]
    assert any('status!~"2.."' in e and "/" in e for e in exprs), "a non-2xx ratio panel"
    assert any("by (worker, topic, partition)" in e and "tpipe_worker_lag_records" in e for e in exprs), (
        "lag per partition"
    )
    assert any(
        e.startswith("histogram_quantile(0.99") and "tpipe_forward_latency_seconds_bucket" in e for e in exprs
    )
    d = _dashboard()
    [max_var] = [v for v in d["templating"]["list"] if v["name"] == "spool_max_bytes"]
    assert max_var["query"] == _configmap()["TPIPE_SPOOL_MAX_BYTES"], "dashboard spool max = the deployed max"


def _operations_promql() -> list[str]:
    text = OPERATIONS.read_text()
    exprs: list[str] = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang == "promql":
            exprs.extend(e.strip() for e in body.split("\n\n") if e.strip() and not e.strip().startswith("#"))
        elif lang == "yaml" and "expr:" in body:
            doc = yaml.safe_load(body)
            for group in doc["groups"]:
                for rule in group["rules"]:
                    exprs.append(str(rule["expr"]))
                    assert rule.get("alert") and rule.get("labels", {}).get("severity"), rule
    return exprs


def test_operations_alert_rules_use_real_metrics() -> None:
    known = _known_metrics()
    exprs = _operations_promql()
    assert len(exprs) >= 6
    problems = [f"{e}: {p}" for e in exprs for p in _promql_problems(e, known)]
    assert not problems, "\n".join(problems)
    used = set().union(*(_promql_parts(e)[0] for e in exprs))
    assert {
        "tpipe_http_requests_total",
        "tpipe_spool_oldest_age_seconds",
        "tpipe_spool_bytes",
        "tpipe_broker_up",
        "tpipe_forward_errors_total",
    } <= used
    text = OPERATIONS.read_text()
    for phrase in ("/readyz", "tpipe token new", "tpipe token revoke", "SIGHUP", "TPIPE_DURABILITY"):
        assert phrase in text, phrase


# ---------------------------------------------------------------------------------------------------
# smoke: the image's command line and HEALTHCHECK against a real receiver process (no Docker, no Kafka)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_image_command_and_healthcheck_run_against_a_real_receiver(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    [health] = _final_stage("HEALTHCHECK")
    health_cmd = json.loads(health.split(" CMD ", 1)[1])
    assert health_cmd[0] == "python"
    entry = json.loads(_final_stage("ENTRYPOINT")[0]) + json.loads(_final_stage("CMD")[0])
    # ENTRYPOINT is the console script; run the same entry point through this interpreter.
    assert _pyproject()["project"]["scripts"][entry[0]] == "tpipe.cli:main"
    port, ops_port = _free_port(), _free_port()
    image_ops_port = _dockerfile_env()["TPIPE_OPS_PORT"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
    env.update(_dockerfile_env())  # the image's environment, adapted to a test machine:
    env.update(
        HOME=str(tmp_path),
        MPLCONFIGDIR=str(tmp_path / "mpl"),
        PYTHONPATH=str(ROOT),
        TPIPE_HOST="127.0.0.1",
        TPIPE_PORT=str(port),
        TPIPE_OPS_PORT=str(ops_port),
        TPIPE_SPOOL_DIR=str(tmp_path / "spool"),
        TPIPE_KAFKA="127.0.0.1:1",  # nothing listens: spool mode must start and stay ready anyway
        TPIPE_TOKEN='["smoke-token"]',
        TPIPE_DRAIN_TIMEOUT_S="1",
        TPIPE_HEALTHCHECK_URL=env["TPIPE_HEALTHCHECK_URL"].replace(f":{image_ops_port}/", f":{ops_port}/"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tpipe.cli", *entry[1:]],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/healthz", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "receiver did not come up"
                time.sleep(0.1)
        hc = subprocess.run([sys.executable, *health_cmd[1:]], env=env, timeout=10)
        assert hc.returncode == 0, "the Dockerfile HEALTHCHECK fails against a healthy receiver"
        bad = subprocess.run(
            [sys.executable, *health_cmd[1:]],
            timeout=10,
            capture_output=True,
            env={**env, "TPIPE_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"},
        )
        assert bad.returncode != 0, "the HEALTHCHECK must fail on an error status (health is 404 on the webhook port)"
        probe = _container(_one("StatefulSet", RECEIVER))["readinessProbe"]["httpGet"]["path"]
        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}{probe}", timeout=3) as resp:
            assert resp.status == 200, "ready without Kafka in spool mode"
        for url in (f"http://127.0.0.1:{port}{probe}", f"http://127.0.0.1:{port}/metrics"):
            try:
                urllib.request.urlopen(url, timeout=3)
                raise AssertionError(f"{url}: ops paths must not be served on the webhook port")
            except urllib.error.HTTPError as exc:
                assert exc.code == 404, url
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        assert rc == 0
        # requests (<= drain) + spool drain (<= drain) + exit: what terminationGracePeriodSeconds assumes
        assert time.monotonic() - t0 < 2 * 1 + 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
