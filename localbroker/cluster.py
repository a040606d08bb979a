"""A local Kafka cluster from the same Maven jars: N KRaft nodes on 127.0.0.1, each a broker and a
controller, every node a voter of one static controller quorum, one data directory each.

    with LocalCluster(3) as cluster:                # free ports, temporary data dir
        settings = cluster.client_settings()        # bootstrap = every node's PLAINTEXT listener
        cluster.node(2).kill()                      # SIGKILL one node; the other two keep a quorum
        cluster.node(2).start()                     # it rejoins on the same ports and data

Internal topics are replicated on every node up to 3 with ``min.insync.replicas`` one less (3 nodes:
RF 3, min ISR 2), and so are topics created without an explicit replication factor
(``plumbing.kafka_clients.fitted_replication``). ``data_dir/tpipe-cluster.json`` keeps the cluster
id, the size and the ports, so a persistent data dir comes back as the same cluster; the nodes live
in ``data_dir/node<id>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from localbroker.config import Membership, random_cluster_id
from localbroker.errors import BrokerError
from localbroker.node import LocalBroker
from localbroker.ports import load_state, pick_port
from localbroker.readiness import probe_metadata, run_coro
from plumbing.settings import KafkaSettings

__all__ = ["CLUSTER_HEAP", "LocalCluster"]

log = logging.getLogger("tpipe.broker")

_STATE_FILE = "tpipe-cluster.json"
#: per node: three JVMs share the machine
CLUSTER_HEAP = ("-Xms128m", "-Xmx512m")


class LocalCluster:
    """``nodes`` Kafka 4.x nodes forming one cluster. ``port`` is the first node's PLAINTEXT port
    (the others follow it: 9092, 9093, 9094); 0 picks free ports. Controller ports are always free
    ones (kept across restarts, like the rest of a persistent ``data_dir``)."""

    def __init__(
        self,
        nodes: int = 3,
        data_dir: str | Path | None = None,
        *,
        port: int = 0,
        heap: tuple[str, ...] = CLUSTER_HEAP,
        start_timeout: float = 180.0,
        overrides: dict[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        if nodes < 1:
            raise BrokerError(f"a cluster needs at least one node, not {nodes}")
        self.size = nodes
        self._req_port = port
        self.heap = heap
        self.start_timeout = start_timeout
        self.overrides = dict(overrides or {})
        self.die_with_parent = die_with_parent
        self._owned_dir = data_dir is None
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.cluster_id = ""
        self.nodes: list[LocalBroker] = []
        self.startup_seconds: float | None = None

    # -- addresses --------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="tpipe-kafka-cluster-"))
        return self._data_dir

    @property
    def bootstrap(self) -> str:
        """Every node's PLAINTEXT listener, comma separated (a client needs any one of them)."""
        if not self.nodes:
            raise BrokerError("cluster ports are not assigned yet: call start() first")
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> LocalBroker:
        """The node with this id (1 .. size)."""
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"no node {node_id} in this cluster of {self.size}")
        return self.nodes[node_id - 1]

    def client_settings(self, **fields: Any) -> KafkaSettings:
        """KafkaSettings for the whole cluster (PLAINTEXT; ``TPIPE_*`` security variables cannot leak in)."""
        if not self.nodes:
            raise BrokerError("cluster not started")
        return self.nodes[0].client_settings(**{"kafka": self.bootstrap, **fields})

    def describe(self) -> list[str]:
        """One line per node: id, listener, controller listener, data dir, pid."""
        return [
            f"node {i} 127.0.0.1:{n.port} controller 127.0.0.1:{n.controller_port} data {n.data_dir} pid {n.pid}"
            for i, n in enumerate(self.nodes, start=1)
        ]

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        """Launch every node that is not running, then wait until each serves and the metadata lists
        them all (a node serves only once a majority of the quorum runs, so none is awaited alone)."""
        if not self.nodes:
            self._plan()
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        try:
            for n in self.nodes:
                n.launch()
            for n in self.nodes:
                n.wait_ready(deadline)
            settings = self.client_settings(kafka_client_id="tpipe-cluster-probe")
            run_coro(lambda: probe_metadata(settings, deadline, self._check_alive, self._where, brokers=self.size))
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - t0
        log.info("kafka cluster ready nodes=%d bootstrap=%s data_dir=%s startup_s=%.2f",
                 self.size, self.bootstrap, self.data_dir, self.startup_seconds)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node at once (one by one, the last ones would wait for a quorum that is
        gone), wait, SIGKILL what ignored it."""
        running = [n for n in self.nodes if n.pid is not None]
        if running:
            with ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(lambda n: n.stop(timeout), running))

    def kill(self) -> None:
        """SIGKILL every node (data dirs and ports are kept)."""
        for n in self.nodes:
            n.kill()

    def wait(self, poll_s: float = 0.5) -> tuple[int, int]:
        """Block until a node exits on its own; returns (node id, exit code)."""
        while True:
            for i, n in enumerate(self.nodes, start=1):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return i, n.wait(timeout=poll_s / max(len(self.nodes), 1))

    def cleanup(self) -> None:
        """Stop, and delete the data dir if it is a temporary one this object created."""
        self.stop()
        if self._owned_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- internals --------------------------------------------------------------------------------
    def _plan(self) -> None:
        """Cluster id and ports (last time's when a persistent data dir has them and they are free),
        then one ``LocalBroker`` per node with its membership."""
        root = self.data_dir
        root.mkdir(parents=True, exist_ok=True)
        state = load_state(root / _STATE_FILE)
        if state and state.get("size") != self.size:
            raise BrokerError(f"{root} holds a cluster of {state.get('size')} nodes, not {self.size}: "
                              f"use --nodes {state.get('size')} or another data dir")
        self.cluster_id = state.get("cluster_id") or random_cluster_id()
        before: list[dict[str, int]] = state.get("nodes") or []
        taken: set[int] = set()
        ports: list[tuple[int, int]] = []
        for i in range(self.size):
            prev = before[i] if i < len(before) else {}
            port = pick_port(self._req_port + i if self._req_port else 0, prev.get("port"), taken)
            taken.add(port)
            controller = pick_port(0, prev.get("controller_port"), taken)
            taken.add(controller)
            ports.append((port, controller))
        voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports, start=1))
        (root / _STATE_FILE).write_text(json.dumps({
            "cluster_id": self.cluster_id,
            "size": self.size,
            "nodes": [{"port": p, "controller_port": c} for p, c in ports],
        }, indent=2) + "\n")
        self.nodes = [
            LocalBroker(
                port=p, controller_port=c, data_dir=root / f"node{i}", heap=self.heap,
                start_timeout=self.start_timeout, overrides=self.overrides, die_with_parent=self.die_with_parent,
                membership=Membership(i, self.cluster_id, voters, self.size),
            )
            for i, (p, c) in enumerate(ports, start=1)
        ]

    def _check_alive(self) -> None:
        for i, n in enumerate(self.nodes, start=1):
            if not n.is_running():
                raise BrokerError(f"kafka node {i} exited during start-up; log {n.log_path}:\n{n.log_tail()}")

    def _where(self) -> str:
        return f"{self.bootstrap}; logs in {self.data_dir}/node*/broker.log"
