"""The deployment files read as data, for the checks in ``tests/deploy/``: the Kubernetes manifests
(objects, the environment a container sees), compose services, the Dockerfile's stages and
instructions, and the code they deploy (the receiver's routes, each worker's settings class)."""

from __future__ import annotations

import base64
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from consumers.alerts.settings import AlertsSettings
from consumers.credits.settings import CreditsSettings
from consumers.lake.settings import LakeSettings
from ingest.settings import IngestSettings
from tests.support.paths import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
DASHBOARD = DEPLOY / "grafana" / "tpipe-dashboard.json"
DEPLOY_README = DEPLOY / "README.md"
OPERATIONS = REPO / "docs" / "operations.md"

IMAGE_NAME = "teslemetry-pipeline"
RECEIVER = "tpipe-receiver"
# worker name (``tpipe consume <name>``) -> (its settings class, its metrics port per the contract)
WORKERS: dict[str, tuple[type[BaseSettings], int]] = {
    "telemetry": (LakeSettings, 9101),
    "alerts": (AlertsSettings, 9102),
    "credits": (CreditsSettings, 9103),
}
# Environment variables that are not settings fields: read by tpipe.cli and by the Dockerfile HEALTHCHECK.
NON_SETTINGS_ENV = {"TPIPE_LOG_LEVEL", "TPIPE_HEALTHCHECK_URL"}
# The variable that points each worker at its database / lake catalog (PostgreSQL in deployments).
DB_ENV = {
    "telemetry": "TPIPE_CATALOG_URI",
    "alerts": "TPIPE_ALERTS_DB_URL",
    "credits": "TPIPE_CREDITS_DB_URL",
}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def field_default(settings: type[BaseSettings], name: str) -> Any:
    return settings.model_fields[name].default


# ---- Kubernetes ----------------------------------------------------------------------------------
def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in k8s_files():
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())  # type: ignore[no-any-return]


def k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(kind: str, name: str) -> dict[str, Any]:
    found = k8s(kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name} in deploy/k8s, found {len(found)}"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    return containers[0]  # type: ignore[no-any-return]


def configmap() -> dict[str, str]:
    return one("ConfigMap", "tpipe-config")["data"]  # type: ignore[no-any-return]


def secret_data(name: str) -> dict[str, str]:
    secret = one("Secret", name)
    data = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        data[key] = base64.b64decode(value).decode()
    return data


def container_env(workload: dict[str, Any]) -> dict[str, str]:
    """The environment a container sees: envFrom ConfigMaps/Secrets, then env (which wins). Raises
    KeyError on a reference to a ConfigMap or Secret key that does not exist."""
    c = container(workload)
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update(one("ConfigMap", src["configMapRef"]["name"])["data"])
        elif "secretRef" in src:
            env.update(secret_data(src["secretRef"]["name"]))
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            env[item["name"]] = secret_data(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[item["name"]] = one("ConfigMap", key["name"])["data"][key["key"]]
        else:
            env[item["name"]] = "<" + next(iter(ref)) + ">"
    return env


def port_number(c: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (number or container port name) as a number."""
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"container {c['name']} has no port named {port!r}")


def receiver_ports(sts: dict[str, Any]) -> tuple[int, int]:
    """(webhook port, ops port) the receiver container is configured with."""
    env = container_env(sts)
    webhook, ops = int(env["TPIPE_PORT"]), int(env["TPIPE_OPS_PORT"])
    assert webhook != ops
    return webhook, ops


def prestop_sleep_s(c: dict[str, Any]) -> float:
    pre = (c.get("lifecycle") or {}).get("preStop")
    if not pre:
        return 0.0
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = pre["exec"]["command"]
    assert cmd[0] == "sleep", f"unexpected preStop command {cmd}"
    return float(cmd[1])


def quantity_bytes(text: str) -> int:
    """A Kubernetes quantity (``6Gi``, ``512M``) in bytes."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "K": 10**3, "M": 10**6, "G": 10**9,
             "T": 10**12}
    m = re.fullmatch(r"(\d+)([KMGT]i?)?", text)
    assert m, f"unparsable quantity {text!r}"
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


# ---- compose -------------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def duration_s(text: str) -> float:
    """A compose duration (``1m30s``, ``45s``) in seconds."""
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(text))
    assert m and any(m.groups()), f"unparsable duration {text!r}"
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0)


# ---- Dockerfile ----------------------------------------------------------------------------------
def dockerfile_lines() -> list[str]:
    """Instructions, continuation lines joined, comments and blank lines left out."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def dockerfile_stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for ln in dockerfile_lines():
        if ln.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ln)
    return stages


def final_stage(instr: str) -> list[str]:
    """The arguments of every ``instr`` instruction of the runtime (last) stage."""
    return [ln[len(instr) + 1:].strip() for ln in dockerfile_stages()[-1] if ln.upper().startswith(instr + " ")]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in final_stage("ENV"):
        for tok in shlex.split(args):
            k, _, v = tok.partition("=")
            env[k] = v
    return env


def dockerfile_uid() -> int:
    [user] = final_stage("USER")
    return int(user.split(":")[0])


# ---- the code that is deployed -------------------------------------------------------------------
def app_routes() -> dict[str, set[str]]:
    """Path -> methods, read from the Starlette app the receiver serves."""
    from ingest.app import create_app

    app = create_app(IngestSettings(token=["test-token"], validate_events=False))
    return {route.path: set(route.methods or ()) for route in app.routes}
