"""deploy/k8s/*.yaml as a whole and for the workers: well-formed objects listed by the kustomization,
workloads that run ``tpipe`` commands the CLI accepts, secure pods, Secrets and ConfigMap kept apart,
and every ``TPIPE_*`` variable a settings field of the process that reads it."""

from __future__ import annotations

import re

import pytest

from consumers.runtime.settings import WorkerSettings
from ingest.settings import IngestSettings
from tests.support.deploy_files import (
    DB_ENV,
    NON_SETTINGS_ENV,
    RECEIVER,
    WORKERS,
    compose,
    compose_env,
    configmap,
    container,
    container_env,
    dockerfile_env,
    dockerfile_uid,
    field_default,
    k8s,
    k8s_docs,
    k8s_files,
    kustomization,
    one,
    pod_spec,
    port_number,
    secret_data,
    workloads,
)
from tpipe.cli import build_parser


def test_k8s_objects_have_api_version_kind_and_name() -> None:
    docs = k8s_docs()
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
    kust = kustomization()
    assert kust["kind"] == "Kustomization"
    assert sorted(kust["resources"]) == sorted(p.name for p in k8s_files())
    assert kust.get("namespace"), "kustomization.yaml sets the namespace"
    assert [d["metadata"]["name"] for d in k8s("Namespace")] in ([], [kust["namespace"]])


def test_workloads_have_image_args_resources_and_security() -> None:
    assert sorted(w["metadata"]["name"] for w in workloads()) == sorted([RECEIVER, *(f"tpipe-{w}" for w in WORKERS)])
    for w in workloads():
        name = w["metadata"]["name"]
        pod = pod_spec(w)
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{name}: selector must match the pod labels"
        c = container(w)
        assert c.get("image"), name
        assert c.get("command") or c.get("args"), f"{name}: container needs command or args"
        res = c.get("resources", {})
        assert res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"), f"{name}: requests"
        assert res.get("limits", {}).get("memory"), f"{name}: memory limit"
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == dockerfile_uid(), f"{name}: runAsUser = the image's USER"
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        if c["securityContext"].get("readOnlyRootFilesystem"):
            assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, (
                f"{name}: read-only root needs a writable /tmp"
            )


def test_container_args_are_tpipe_commands() -> None:
    receiver = container(one("StatefulSet", RECEIVER))
    assert "command" not in receiver, "keep the image's ENTRYPOINT (tpipe)"
    assert receiver["args"] == ["serve"]
    assert build_parser(receiver["args"]).parse_args(receiver["args"]).command == "serve"
    for worker in WORKERS:
        c = container(one("Deployment", f"tpipe-{worker}"))
        assert "command" not in c, "keep the image's ENTRYPOINT (tpipe)"
        assert c["args"] == ["consume", worker]
        assert build_parser(c["args"]).parse_args(c["args"]).worker == worker


def test_secrets_stay_out_of_the_configmap_and_every_reference_resolves() -> None:
    cm = configmap()
    assert not [k for k in cm if re.search(r"PASSWORD|SECRET|TOKEN$|_URL$|_URI$", k)], "secrets belong in a Secret"
    assert not [v for v in cm.values() if re.search(r"://[^/@\s]+:[^/@\s]+@", v)], "credentials in a ConfigMap URL"
    for w in workloads():
        env = container_env(w)  # raises KeyError on a dangling secretKeyRef / configMapRef
        assert "TPIPE_KAFKA_SASL_PASSWORD" in env, f"{w['metadata']['name']}: SASL password from the Secret"
        c = container(w)
        assert not [e for e in c.get("env", []) if "PASSWORD" in e["name"] and "value" in e], "password as plain env"
        for v in pod_spec(w).get("volumes", []):
            if "secret" in v:
                one("Secret", v["secret"]["secretName"])
            if "configMap" in v:
                one("ConfigMap", v["configMap"]["name"])
    assert set(secret_data("tpipe-kafka-credentials")) == {"TPIPE_KAFKA_SASL_PASSWORD"}
    assert cm["TPIPE_KAFKA_SECURITY_PROTOCOL"].startswith("SASL_")


def test_configmap_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    cm = configmap()
    for key, value in cm.items():
        if key.startswith("TPIPE_"):
            monkeypatch.setenv(key, value)
    s = IngestSettings(token=["x"])  # raises on a bad value (e.g. an unknown durability or protocol)
    assert str(s.spool_dir) == cm["TPIPE_SPOOL_DIR"]
    assert s.kafka == cm["TPIPE_KAFKA"]
    for settings, _ in WORKERS.values():
        settings()


def _unknown_settings(names: set[str], fields: set[str]) -> set[str]:
    return {
        n for n in names
        if n.startswith("TPIPE_") and n not in NON_SETTINGS_ENV and n[len("TPIPE_"):].lower() not in fields
    }


def test_env_names_are_settings_fields() -> None:
    """Every TPIPE_* name in the ConfigMap, the pods, compose and the Dockerfile is a settings field of the
    process that reads it (a typo or a renamed field would be ignored silently by pydantic-settings)."""
    ingest_fields = set(IngestSettings.model_fields)
    worker_fields = {w: set(settings.model_fields) for w, (settings, _) in WORKERS.items()}
    all_fields = ingest_fields.union(*worker_fields.values())
    services = compose()["services"]
    where_names_fields = [
        ("ConfigMap tpipe-config", set(configmap()), all_fields),
        ("receiver", set(container_env(one("StatefulSet", RECEIVER))), all_fields),
        ("compose receiver", set(compose_env(services["receiver"])), ingest_fields),
        ("Dockerfile ENV", set(dockerfile_env()), ingest_fields),
    ]
    for worker, fields in worker_fields.items():
        own = {e["name"] for e in container(one("Deployment", f"tpipe-{worker}")).get("env", [])}
        where_names_fields += [(f"k8s {worker}", own, fields),
                               (f"compose {worker}", set(compose_env(services[worker])), fields)]
    for where, names, fields in where_names_fields:
        unknown = _unknown_settings(names, fields)
        assert not unknown, f"{where}: {sorted(unknown)} are not settings (typo, or renamed field?)"
    assert _unknown_settings({"TPIPE_SPOOL_DIRECTORY"}, ingest_fields) == {"TPIPE_SPOOL_DIRECTORY"}


def test_worker_metrics_ports_and_liveness() -> None:
    for worker, (settings, port) in WORKERS.items():
        assert field_default(settings, "metrics_port") == port, f"{worker}: contract says {port}"
        dep = one("Deployment", f"tpipe-{worker}")
        c = container(dep)
        env = container_env(dep)
        assert [p["containerPort"] for p in c["ports"]] == [port]
        assert int(env["TPIPE_METRICS_PORT"]) == port
        assert env.get("TPIPE_METRICS_ADDR", "0.0.0.0") == "0.0.0.0"
        live = c["livenessProbe"]["httpGet"]
        assert live["path"] == "/metrics" and port_number(c, live["port"]) == port
    assert field_default(WorkerSettings, "metrics_addr") == "0.0.0.0", "probes come from outside the pod"


def test_worker_databases_come_from_the_secret() -> None:
    for worker, key_env in DB_ENV.items():
        dep = one("Deployment", f"tpipe-{worker}")
        [item] = [e for e in container(dep)["env"] if e["name"] == key_env]
        assert "secretKeyRef" in item["valueFrom"], f"{worker}: {key_env} carries a password"
        assert container_env(dep)[key_env].startswith("postgresql://")
    urls = [secret_data("tpipe-databases")[k] for k in ("alerts-db-url", "credits-db-url", "lake-catalog-uri")]
    assert len({u.rsplit("/", 1)[1] for u in urls}) == 3, "one database each"


def test_worker_grace_periods_outlast_the_drain() -> None:
    for worker in WORKERS:
        dep = one("Deployment", f"tpipe-{worker}")
        drain = float(container_env(dep).get("TPIPE_DRAIN_TIMEOUT_S", field_default(WorkerSettings, "drain_timeout_s")))
        assert pod_spec(dep)["terminationGracePeriodSeconds"] > drain, worker
