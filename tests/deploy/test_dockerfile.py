"""deploy/Dockerfile and .dockerignore against the project they package: the wheel's contents, the
receiver's port, routes and settings; and the image's command line and HEALTHCHECK run against a real
receiver process (no Docker engine needed)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ingest.settings import IngestSettings
from localbroker import free_port
from tests.support.deploy_files import (
    DOCKERIGNORE,
    RECEIVER,
    app_routes,
    container,
    dockerfile_env,
    dockerfile_lines,
    dockerfile_stages,
    dockerfile_uid,
    field_default,
    final_stage,
    one,
    pyproject,
)
from tests.support.paths import REPO
from tests.support.processes import tpipe_env, wait_healthy


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    lines = dockerfile_lines()
    args = dict(re.match(r"ARG (\w+)=(\S+)", ln).groups() for ln in lines if re.match(r"ARG \w+=", ln))  # type: ignore[union-attr]
    froms = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ln.split()[1])
        for ln in lines
        if ln.upper().startswith("FROM ")
    ]
    assert len(froms) >= 2, "multi-stage: a builder and a runtime"
    assert all(f == "python:3.11-slim" for f in froms), froms
    assert re.search(r"FROM \S+ AS builder", "\n".join(lines), re.I)
    final = "\n".join(dockerfile_stages()[-1])
    assert re.search(r"COPY --from=builder /opt/venv /opt/venv", final), "the runtime gets the built venv"
    assert not re.search(r"\bpip3? (install|wheel)\b", final), "no pip in the runtime stage"
    builder = "\n".join(dockerfile_stages()[0])
    assert "pip wheel" in builder and "pip install" in builder


def test_dockerfile_runtime_user_port_entrypoint_and_healthcheck() -> None:
    uid = dockerfile_uid()
    assert uid != 0 and uid == 10001
    env = dockerfile_env()
    ops_port = int(env["TPIPE_OPS_PORT"])
    assert final_stage("EXPOSE") == [f"{field_default(IngestSettings, 'port')} {ops_port}"]
    assert json.loads(final_stage("ENTRYPOINT")[0]) == ["tpipe"]
    assert "tpipe" in pyproject()["project"]["scripts"]
    assert json.loads(final_stage("CMD")[0]) == ["serve"]
    assert env["TPIPE_HOST"] == "0.0.0.0"
    assert env["TPIPE_SPOOL_DIR"] == "/var/lib/tpipe/spool"
    assert json.loads(final_stage("VOLUME")[0]) == [env["TPIPE_SPOOL_DIR"]]
    [health] = final_stage("HEALTHCHECK")
    assert "CMD" in health and "urllib.request" in health
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", health + " " + env["TPIPE_HEALTHCHECK_URL"])
    assert url and int(url.group(1)) == ops_port and url.group(2) in app_routes(), "health is on the ops port"
    assert final_stage("WORKDIR"), "WORKDIR"


def test_dockerfile_copies_what_the_wheel_build_needs_and_dockerignore_allows_only_that() -> None:
    py = pyproject()
    wheel = py["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", py["project"]["readme"], *wheel["packages"], *wheel.get("force-include", {})}
    copied: set[str] = set()
    for ln in dockerfile_stages()[0]:
        if ln.upper().startswith("COPY ") and "--from" not in ln:
            copied.update(p.rstrip("/") for p in ln.split()[1:-1])
    assert needed <= copied, f"not copied into the builder: {needed - copied}"
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: no such path"
    ignore = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*", ".dockerignore is an allow-list"
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    assert copied <= allowed, f"excluded from the build context: {copied - allowed}"
    assert not {"tests", ".venv", "var", ".git"} & allowed


def test_image_command_and_healthcheck_run_against_a_real_receiver(tmp_path: Path) -> None:
    """The image's ENTRYPOINT + CMD with the image's environment (ports and paths adapted to a test
    machine, Kafka unreachable): healthy and ready in spool mode, the HEALTHCHECK passes on the ops port
    and fails on the webhook port, ops paths are 404 on the webhook port, SIGTERM exits 0 within the
    drain time the grace periods assume."""
    [health] = final_stage("HEALTHCHECK")
    health_cmd = json.loads(health.split(" CMD ", 1)[1])
    assert health_cmd[0] == "python"
    entry = json.loads(final_stage("ENTRYPOINT")[0]) + json.loads(final_stage("CMD")[0])
    # ENTRYPOINT is the console script; run the same entry point through this interpreter.
    assert pyproject()["project"]["scripts"][entry[0]] == "tpipe.cli:main"
    port, ops_port = free_port(), free_port()
    image_env = dockerfile_env()
    env = tpipe_env(**image_env)
    env.update(
        HOME=str(tmp_path),
        MPLCONFIGDIR=str(tmp_path / "mpl"),
        TPIPE_HOST="127.0.0.1",
        TPIPE_PORT=str(port),
        TPIPE_OPS_PORT=str(ops_port),
        TPIPE_SPOOL_DIR=str(tmp_path / "spool"),
        TPIPE_KAFKA="127.0.0.1:1",  # nothing listens: spool mode must start and stay ready anyway
        TPIPE_TOKEN='["smoke-token"]',
        TPIPE_DRAIN_TIMEOUT_S="1",
        TPIPE_HEALTHCHECK_URL=image_env["TPIPE_HEALTHCHECK_URL"].replace(
            f":{image_env['TPIPE_OPS_PORT']}/", f":{ops_port}/"),
    )
    log_path = tmp_path / "receiver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tpipe.cli", *entry[1:]], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_healthy(f"http://127.0.0.1:{ops_port}/healthz", proc, lambda: log_path.read_text()[-2000:], timeout=30)
        hc = subprocess.run([sys.executable, *health_cmd[1:]], env=env, timeout=10)
        assert hc.returncode == 0, "the Dockerfile HEALTHCHECK fails against a healthy receiver"
        bad = subprocess.run([sys.executable, *health_cmd[1:]], timeout=10, capture_output=True,
                             env={**env, "TPIPE_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"})
        assert bad.returncode != 0, "the HEALTHCHECK must fail on an error status (health is 404 on the webhook port)"
        probe = container(one("StatefulSet", RECEIVER))["readinessProbe"]["httpGet"]["path"]
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
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-2000:]
        # requests (<= drain) + spool drain (<= drain) + exit: what terminationGracePeriodSeconds assumes
        assert time.monotonic() - t0 < 2 * 1 + 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
