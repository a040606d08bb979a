"""The receiver in deploy/k8s: probes and scrapes on the ops port the app serves them on, only
``/webhook`` public, one spool volume per replica big enough for the spool limit, a grace period that
outlasts the drain, Services and a PodDisruptionBudget that select its pods, and the tokens Secret
mounted where ``TPIPE_TOKENS_FILE`` points."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.http.limits import OPS_PATHS
from ingest.settings import IngestSettings
from ingest.tokens import TokensFile
from tests.support.deploy_files import (
    RECEIVER,
    app_routes,
    container,
    container_env,
    dockerfile_env,
    field_default,
    k8s,
    one,
    pod_spec,
    port_number,
    prestop_sleep_s,
    quantity_bytes,
    receiver_ports,
    secret_data,
    workloads,
)

PROBES = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}


def test_receiver_probes_match_the_app_routes_and_port() -> None:
    routes = app_routes()
    assert {"/webhook", "/healthz", "/readyz", "/metrics"} <= set(routes)
    assert OPS_PATHS < set(routes) and "/webhook" not in OPS_PATHS
    sts = one("StatefulSet", RECEIVER)
    c = container(sts)
    port = field_default(IngestSettings, "port")
    assert port == 8080
    webhook_port, ops_port = receiver_ports(sts)
    assert webhook_port == port
    assert sorted(p["containerPort"] for p in c["ports"]) == sorted([webhook_port, ops_port])
    env = container_env(sts)
    assert env["TPIPE_HOST"] == "0.0.0.0", "the receiver must listen beyond loopback"
    assert "TPIPE_OPS_HOST" not in env, "probes and scrapes come from outside the pod"
    for probe_name, path in PROBES.items():
        probe = c[probe_name]["httpGet"]
        assert probe["path"] == path
        assert "GET" in routes[probe["path"]]
        # with an ops port the ops paths answer 404 on the webhook port: probes must use the ops port
        assert port_number(c, probe["port"]) == ops_port, probe_name


def test_prometheus_annotations_point_at_metrics_endpoints() -> None:
    routes = app_routes()
    for w in workloads():
        ann = w["spec"]["template"]["metadata"].get("annotations", {})
        assert ann.get("prometheus.io/scrape") == "true", w["metadata"]["name"]
        assert int(ann["prometheus.io/port"]) in [p["containerPort"] for p in container(w)["ports"]]
        assert ann["prometheus.io/path"] == "/metrics"
    sts = one("StatefulSet", RECEIVER)
    ann = sts["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/path"] in routes
    assert int(ann["prometheus.io/port"]) == receiver_ports(sts)[1], "metrics are on the ops port"


def test_only_the_webhook_is_public_and_probes_use_the_ops_port() -> None:
    """The Ingress routes /webhook alone, to a Service that targets the webhook port alone; the ops port
    (health, metrics) is reached only by probes and scraping."""
    sts = one("StatefulSet", RECEIVER)
    c = container(sts)
    webhook_port, ops_port = receiver_ports(sts)
    services = {s["metadata"]["name"]: s for s in k8s("Service")}
    ingresses = k8s("Ingress")
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
            assert port_number(c, target[0]["targetPort"]) == webhook_port
            # the Service behind the Ingress carries nothing but the webhook port
            assert [port_number(c, sp["targetPort"]) for sp in svc["spec"]["ports"]] == [webhook_port]
    for name in PROBES:
        assert port_number(c, c[name]["httpGet"]["port"]) == ops_port, name
    assert int(sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == ops_port


def test_statefulset_keeps_a_spool_volume_per_replica() -> None:
    sts = one("StatefulSet", RECEIVER)
    env = container_env(sts)
    spool_dir = env["TPIPE_SPOOL_DIR"]
    assert spool_dir == "/var/lib/tpipe/spool" == dockerfile_env()["TPIPE_SPOOL_DIR"]
    templates = {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m for m in container(sts)["volumeMounts"]}
    assert spool_dir in mounts, f"nothing mounted at TPIPE_SPOOL_DIR={spool_dir}"
    claim = templates.get(mounts[spool_dir]["name"])
    assert claim is not None, "the spool must be a volumeClaimTemplate (one PVC per replica), not a shared volume"
    assert not mounts[spool_dir].get("readOnly")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    size = quantity_bytes(claim["spec"]["resources"]["requests"]["storage"])
    max_bytes = int(env.get("TPIPE_SPOOL_MAX_BYTES", field_default(IngestSettings, "spool_max_bytes")))
    segment = int(env.get("TPIPE_SPOOL_SEGMENT_BYTES", field_default(IngestSettings, "spool_segment_bytes")))
    assert size >= max_bytes + segment, "the PVC must hold TPIPE_SPOOL_MAX_BYTES plus one segment"
    policy = sts["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}, "a spool PVC may hold unforwarded events"
    assert env["TPIPE_DURABILITY"] in ("spool", "broker")
    # the spool is not also an emptyDir / shared volume
    assert mounts[spool_dir]["name"] not in {v["name"] for v in pod_spec(sts).get("volumes", [])}


def test_receiver_grace_period_outlasts_the_drain() -> None:
    sts = one("StatefulSet", RECEIVER)
    drain = float(container_env(sts).get("TPIPE_DRAIN_TIMEOUT_S", field_default(IngestSettings, "drain_timeout_s")))
    # uvicorn waits up to drain_timeout_s for in-flight requests, then the lifespan drains the spool for
    # up to drain_timeout_s; preStop runs before SIGTERM.
    assert pod_spec(sts)["terminationGracePeriodSeconds"] > prestop_sleep_s(container(sts)) + 2 * drain


def test_receiver_services_and_pdb_select_the_receiver_pods() -> None:
    sts = one("StatefulSet", RECEIVER)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    c = container(sts)
    services = {s["metadata"]["name"]: s for s in k8s("Service")}
    svc = services[RECEIVER]
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    [port] = svc["spec"]["ports"]
    assert port["port"] == 80
    assert port_number(c, port["targetPort"]) == 8080
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    pdbs = [p for p in k8s("PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()]
    assert len(pdbs) == 1
    assert pdbs[0]["spec"]["minAvailable"] == 1
    assert sts["spec"]["replicas"] > pdbs[0]["spec"]["minAvailable"], "else the PDB blocks every node drain"


def test_tokens_secret_is_a_tokens_file_mounted_where_tpipe_tokens_file_points(tmp_path: Path) -> None:
    sts = one("StatefulSet", RECEIVER)
    tokens_path = Path(container_env(sts)["TPIPE_TOKENS_FILE"])
    assert tokens_path == Path("/etc/tpipe/tokens.json")
    mounts = [m for m in container(sts)["volumeMounts"] if m["mountPath"] == str(tokens_path.parent)]
    assert len(mounts) == 1 and "subPath" not in mounts[0], "mount the directory: subPath mounts never see updates"
    [vol] = [v for v in pod_spec(sts)["volumes"] if v["name"] == mounts[0]["name"]]
    data = secret_data(vol["secret"]["secretName"])
    assert set(data) == {tokens_path.name}
    sample = tmp_path / tokens_path.name
    sample.write_text(data[tokens_path.name])
    assert isinstance(json.loads(sample.read_text())["tokens"], list)
    assert TokensFile(sample).load() == []  # placeholder: no token ships with the manifests
