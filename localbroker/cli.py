"""``tpipe broker`` (and ``python -m localbroker``): run a local Kafka node, or a cluster of them
(``--nodes 3``), in the foreground, or only fetch the jars."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from localbroker.cluster import LocalCluster
from localbroker.errors import BrokerError
from localbroker.jars import ensure_kafka_jars
from localbroker.node import LocalBroker

__all__ = ["broker_main", "cluster_main", "main", "register"]

log = logging.getLogger("tpipe.broker")

DEFAULT_DATA_DIR = Path("var/kafka")
DEFAULT_CLUSTER_DIR = Path("var/kafka-cluster")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("broker", help="run a local Apache Kafka broker (no Docker)",
                       description="Run a real Apache Kafka (KRaft) from Maven-resolved jars until Ctrl-C/SIGTERM: "
                       "one node, or --nodes N forming one cluster. Prints the bootstrap address once it serves "
                       "(with --nodes, then one line per node with its ports and data dir).")
    _arguments(p)
    p.set_defaults(func=_run)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=9092,
                   help="PLAINTEXT port (of the first node; the others take the next ones); 0 picks free ones "
                        "(default 9092)")
    p.add_argument("--nodes", type=int, default=1,
                   help="nodes of the cluster, each a broker and a controller voter; topics and internal topics "
                        "get min(3, nodes) replicas (default 1)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"data directory, kept across restarts (default {DEFAULT_DATA_DIR}; with --nodes above 1 "
                        f"{DEFAULT_CLUSTER_DIR}, one node<id> directory per node)")
    p.add_argument("--sasl", action="store_true",
                   help="add a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512); one node only")
    p.add_argument("--resolve-only", action="store_true", help="only fetch the jars with Maven; print their directory")


def _run(args: argparse.Namespace) -> int:
    if args.resolve_only:
        try:
            print(ensure_kafka_jars())
        except BrokerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if args.nodes != 1:
        return cluster_main(args.nodes, args.port, args.data_dir or DEFAULT_CLUSTER_DIR, sasl=args.sasl)
    return broker_main(args.port, args.data_dir or DEFAULT_DATA_DIR, sasl=args.sasl)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def broker_main(port: int = 9092, data_dir: Path | None = None, *, sasl: bool = False) -> int:
    """Run a broker in the foreground until Ctrl-C/SIGTERM; returns the exit code.

    Prints the bootstrap address (one line, ``127.0.0.1:PORT``) once the broker serves requests; with
    ``sasl`` a second line ``sasl 127.0.0.1:PORT user password``. Exit 0 after a clean stop, 1 if the
    broker could not start or died on its own. If this process is SIGKILLed the broker dies with it.
    """
    broker = LocalBroker(port=port, data_dir=data_dir, sasl=sasl, die_with_parent=True)
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            broker.start()
            print(broker.bootstrap, flush=True)
            if sasl:
                print(f"sasl {broker.sasl_bootstrap} {broker.username} {broker.password}", flush=True)
            rc = broker.wait()
            log.error("kafka broker exited on its own rc=%s; log %s:\n%s", rc, broker.log_path, broker.log_tail())
            return 1
        except KeyboardInterrupt:
            log.info("interrupted: stopping kafka broker")
            return 0
        except BrokerError as e:
            log.error("%s", e)
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
        finally:
            broker.stop()
            if data_dir is None:
                broker.cleanup()
    finally:
        signal.signal(signal.SIGTERM, old_term)


def cluster_main(nodes: int, port: int = 9092, data_dir: Path | None = None, *, sasl: bool = False) -> int:
    """Run a cluster of ``nodes`` in the foreground until Ctrl-C/SIGTERM; returns the exit code.

    Prints the bootstrap (``127.0.0.1:P1,127.0.0.1:P2,...``) once every node serves, then one line per
    node (``node 1 127.0.0.1:P controller 127.0.0.1:C data DIR pid N``). Exit 0 after a clean stop, 1 if
    the cluster could not start or a node died on its own (the others are stopped then)."""
    if nodes < 1:
        print(f"error: --nodes must be at least 1, not {nodes}", file=sys.stderr)
        return 2
    if sasl:
        print("error: --sasl runs one node only (drop --nodes)", file=sys.stderr)
        return 2
    cluster = LocalCluster(nodes, data_dir, port=port, die_with_parent=True)
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            cluster.start()
            print(cluster.bootstrap, flush=True)
            for line in cluster.describe():
                print(line, flush=True)
            node_id, rc = cluster.wait()
            node = cluster.node(node_id)
            log.error("kafka node %d exited on its own rc=%s; log %s:\n%s", node_id, rc, node.log_path, node.log_tail())
            return 1
        except KeyboardInterrupt:
            log.info("interrupted: stopping kafka cluster")
            return 0
        except BrokerError as e:
            log.error("%s", e)
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
        finally:
            cluster.stop()
            if data_dir is None:
                cluster.cleanup()
    finally:
        signal.signal(signal.SIGTERM, old_term)


def main(argv: list[str] | None = None) -> int:
    """``python -m localbroker``: the same command as ``tpipe broker`` (a temporary data dir by default)."""
    from plumbing.logs import configure_logging

    ap = argparse.ArgumentParser(prog="python -m localbroker", description="Run a local Apache Kafka broker.")
    _arguments(ap)
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    configure_logging(args.log_level)
    if args.resolve_only:
        return _run(args)
    if args.nodes != 1:
        return cluster_main(args.nodes, args.port, args.data_dir, sasl=args.sasl)
    return broker_main(args.port, args.data_dir, sasl=args.sasl)
