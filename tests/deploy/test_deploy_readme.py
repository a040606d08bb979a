"""deploy/README.md against the files it describes: the paths it lists exist, its Kubernetes table
names exactly the objects of the manifests, and the figures it quotes (image tag, ports, replicas,
grace period, Kafka image) are the ones deployed."""

from __future__ import annotations

import re

from tests.support.deploy_files import (
    DEPLOY,
    DEPLOY_README,
    RECEIVER,
    compose,
    dockerfile_env,
    dockerfile_uid,
    final_stage,
    k8s_docs,
    one,
    pod_spec,
    pyproject,
)

_TABLE_KINDS = {"StatefulSet", "Deployment", "Service", "Ingress", "PodDisruptionBudget", "ConfigMap", "Secret"}


def _expand(name: str) -> list[str]:
    """``tpipe-{a,b}`` -> ``tpipe-a``, ``tpipe-b`` (the README's shorthand)."""
    m = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", name)
    return [m.group(1) + part + m.group(3) for part in m.group(2).split(",")] if m else [name]


def test_the_paths_it_lists_exist() -> None:
    text = DEPLOY_README.read_text()
    rows = re.findall(r"^\| `([^`]+)` \|", text.split("## Image", 1)[0], re.M)
    assert {"Dockerfile", "compose.yaml", "k8s/", "grafana/tpipe-dashboard.json", "kafka/"} <= set(rows)
    for path in rows:
        assert (DEPLOY / path).exists(), f"deploy/README.md lists {path}: no such path in deploy/"


def test_its_kubernetes_table_names_exactly_the_manifests_objects() -> None:
    text = DEPLOY_README.read_text()
    cells = re.findall(r"^\| `(\w+)/([\w{},-]+)` \|", text, re.M)
    described = {(kind, name) for kind, names in cells for name in _expand(names)}
    deployed = {(d["kind"], d["metadata"]["name"]) for d in k8s_docs() if d["kind"] in _TABLE_KINDS}
    assert described == deployed, f"only described: {described - deployed}; only deployed: {deployed - described}"


def test_the_figures_it_quotes_are_the_deployed_ones() -> None:
    text = " ".join(DEPLOY_README.read_text().split())  # one line: figures wrap in the Markdown
    version = pyproject()["project"]["version"]
    assert f"-t teslemetry-pipeline:{version}" in text, "the docker build line tags the project version"
    env = dockerfile_env()
    assert f"EXPOSE 8080 {env['TPIPE_OPS_PORT']}" in text and final_stage("EXPOSE") == [f"8080 {env['TPIPE_OPS_PORT']}"]
    assert f"uid/gid {dockerfile_uid()}" in text
    assert f"`{compose()['services']['kafka']['image']}`" in text
    sts = one("StatefulSet", RECEIVER)
    assert f"{sts['spec']['replicas']} replicas" in text
    assert f"terminationGracePeriodSeconds: {pod_spec(sts)['terminationGracePeriodSeconds']}" in text
    for port in (9101, 9102, 9103):
        assert str(port) in text
