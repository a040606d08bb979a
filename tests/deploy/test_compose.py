"""deploy/compose.yaml against the code it runs: services and their start order, the receiver's
ports, spool volume and grace period, a KRaft Kafka whose settings agree with each other, the
workers' databases, and one image name for compose and Kubernetes."""

from __future__ import annotations

import base64
import re

import yaml

from consumers.runtime.settings import WorkerSettings
from ingest.settings import IngestSettings
from tests.support.deploy_files import (
    COMPOSE,
    DB_ENV,
    DOCKERFILE,
    IMAGE_NAME,
    K8S,
    WORKERS,
    app_routes,
    compose,
    compose_env,
    container,
    duration_s,
    field_default,
    kustomization,
    pyproject,
    workloads,
)
from tests.support.paths import REPO


def test_compose_has_every_service_with_images_and_dependencies() -> None:
    services = compose()["services"]
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


def test_every_yaml_file_parses_into_mappings() -> None:
    files = [COMPOSE, *K8S.glob("*.yaml"), *K8S.glob("*.yml")]
    assert len(files) >= 8
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"


def test_image_names_are_consistent_across_compose_and_k8s() -> None:
    version = pyproject()["project"]["version"]
    expected = f"{IMAGE_NAME}:{version}"
    services = compose()["services"]
    for name in ["receiver", *WORKERS]:
        svc = services[name]
        assert svc["image"] == expected, name
        build = svc["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == REPO, "build context = repository root"
        assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE
    for w in workloads():
        assert container(w)["image"] == expected, w["metadata"]["name"]
    for img in kustomization().get("images", []):
        assert img["name"] == IMAGE_NAME and img.get("newTag", version) == version


def test_compose_kafka_is_kraft_with_single_node_settings() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = compose_env(kafka)
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
    assert base64.urlsafe_b64encode(raw).decode().rstrip("=") == cluster_id, "CLUSTER_ID must round-trip (Kafka Uuid)"
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
        assert compose_env(services[name])["TPIPE_KAFKA"] in advertised, name
    assert "healthcheck" in kafka


def test_compose_receiver_spool_volume_healthcheck_and_grace() -> None:
    spec = compose()
    rec = spec["services"]["receiver"]
    env = compose_env(rec)
    spool = env["TPIPE_SPOOL_DIR"]
    volumes = [v.split(":") for v in rec["volumes"]]
    named = [src for src, dst, *_ in volumes if dst == spool]
    assert named, "the receiver's spool must be on a volume"
    assert named[0] in spec["volumes"], "a named volume (survives container recreation)"
    assert env["TPIPE_HOST"] == "0.0.0.0"
    ops_port = int(env["TPIPE_OPS_PORT"])
    assert int(env["TPIPE_PORT"]) == 8080
    ports = [str(p) for p in rec["ports"]]
    assert "8080:8080" in ports
    assert f"127.0.0.1:{ops_port}:{ops_port}" in ports, "the ops port is published on the host's loopback only"
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(rec["healthcheck"]["test"]))
    assert m and int(m.group(1)) == ops_port and m.group(2) in app_routes()
    assert env["TPIPE_HEALTHCHECK_URL"] == f"http://127.0.0.1:{ops_port}/healthz"
    drain = float(env.get("TPIPE_DRAIN_TIMEOUT_S", field_default(IngestSettings, "drain_timeout_s")))
    assert duration_s(rec["stop_grace_period"]) > 2 * drain
    for worker in WORKERS:
        wenv = compose_env(spec["services"][worker])
        wdrain = float(wenv.get("TPIPE_DRAIN_TIMEOUT_S", field_default(WorkerSettings, "drain_timeout_s")))
        assert duration_s(spec["services"][worker]["stop_grace_period"]) > wdrain, worker


def test_compose_workers_serve_metrics_on_their_contract_ports() -> None:
    services = compose()["services"]
    for worker, (settings, port) in WORKERS.items():
        assert field_default(settings, "metrics_port") == port, f"{worker}: contract says {port}"
        env = compose_env(services[worker])
        assert int(env["TPIPE_METRICS_PORT"]) == port
        assert env["TPIPE_HEALTHCHECK_URL"] == f"http://127.0.0.1:{port}/metrics"


def test_compose_postgres_serves_the_worker_databases() -> None:
    spec = compose()
    pg = spec["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "healthcheck" in pg and any(":/var/lib/postgresql/data" in str(v) for v in pg["volumes"])
    init_sql = " ".join(spec["configs"][c["source"]]["content"] for c in pg["configs"])
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql)) | {pg["environment"]["POSTGRES_DB"]}
    for worker, key in DB_ENV.items():
        url = compose_env(spec["services"][worker])[key]
        m = re.fullmatch(r"postgresql://(\w+):[^@]+@postgres:5432/(\w+)", url)
        assert m, f"{worker}: {url}"
        assert m.group(1) == pg["environment"]["POSTGRES_USER"]
        assert m.group(2) in created, f"{worker}: database {m.group(2)} is never created"
