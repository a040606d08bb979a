"""A node's ``server.properties`` (rendered from ``deploy/kafka/server.properties.template``) and the
one-time storage format (``kafka.tools.StorageTool format``).

A node is alone (node id 1, the only voter of its controller quorum, internal topics RF 1) or one of
a local cluster's nodes (``Membership``: its id, the cluster id, every voter, the cluster's size,
from which the internal topics' replication and ``min.insync.replicas`` follow)."""

from __future__ import annotations

import base64
import logging
import string
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from localbroker.errors import BrokerError
from localbroker.jars import deploy_dir, java_executable
from plumbing.kafka_clients import fitted_replication

__all__ = [
    "SCRAM_MECHANISMS",
    "Membership",
    "NodeConfig",
    "format_storage",
    "kafka_command",
    "random_cluster_id",
    "render_properties",
]

log = logging.getLogger("tpipe.broker")

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class Membership:
    """A node's place in a local cluster: its id, the shared cluster id, the controller quorum
    (``1@127.0.0.1:PORT,2@...``, every node a voter) and the number of nodes."""

    node_id: int
    cluster_id: str
    quorum_voters: str
    size: int


@dataclass(slots=True)
class NodeConfig:
    """What differs between nodes: ports, data dir, the SASL user, extra properties, the cluster."""

    port: int
    controller_port: int
    kraft_dir: Path
    sasl_port: int = 0
    username: str = ""
    password: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    membership: Membership | None = None

    @property
    def sasl(self) -> bool:
        return bool(self.sasl_port)


def random_cluster_id() -> str:
    """Like ``org.apache.kafka.common.Uuid.randomUuid()``: 22 url-safe base64 chars, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def render_properties(cfg: NodeConfig) -> str:
    listeners = [f"PLAINTEXT://127.0.0.1:{cfg.port}", f"CONTROLLER://127.0.0.1:{cfg.controller_port}"]
    advertised = [f"PLAINTEXT://127.0.0.1:{cfg.port}"]
    extra: list[str] = []
    if cfg.sasl:
        listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{cfg.sasl_port}")
        advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{cfg.sasl_port}")
        plain_jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{cfg.username}" password="{cfg.password}" '
            f'user_{cfg.username}="{cfg.password}";'
        )
        scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        extra += [
            "# SASL_PLAINTEXT listener: PLAIN (user in JAAS) and SCRAM (users stored at format time)",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            f"listener.name.sasl_plaintext.plain.sasl.jaas.config={plain_jaas}",
            f"listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={scram_jaas}",
            f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={scram_jaas}",
        ]
    if cfg.overrides:
        extra.append("# overrides")
        extra += [f"{k}={v}" for k, v in cfg.overrides.items()]
    member = cfg.membership
    replication, min_insync = fitted_replication(member.size if member else 1)
    template = string.Template((deploy_dir() / "server.properties.template").read_text())
    return template.substitute(
        node_id=member.node_id if member else 1,
        quorum_voters=member.quorum_voters if member else f"1@127.0.0.1:{cfg.controller_port}",
        replication=replication,
        min_insync=min_insync,
        listeners=",".join(listeners),
        advertised_listeners=",".join(advertised),
        log_dirs=str(cfg.kraft_dir),
        extra="\n".join(extra),
    )


def format_storage(libs: Path, cfg: NodeConfig, *, config_path: Path, cluster_id: str, log_file: Path) -> None:
    """Format the node's storage once (its SCRAM users are stored at format time)."""
    cmd = [
        java_executable(),
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",
        "-c",
        str(config_path),
    ]
    if cfg.sasl:
        for mech in SCRAM_MECHANISMS:
            cmd += ["--add-scram", f"{mech}=[name={cfg.username},password={cfg.password}]"]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    log_file.write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-30:])
        raise BrokerError(f"kafka storage format failed (rc={res.returncode}) in {cfg.kraft_dir}:\n{tail}")
    log.info("formatted kafka storage dir=%s cluster_id=%s seconds=%.2f", cfg.kraft_dir, cluster_id,
             time.monotonic() - t0)


def kafka_command(libs: Path, heap: tuple[str, ...], data_dir: Path, config_path: Path) -> list[str]:
    """The ``java ... kafka.Kafka server.properties`` command line of a node."""
    return [
        java_executable(),
        *heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={data_dir}",
        f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(config_path),
    ]
