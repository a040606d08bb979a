"""``tpipe broker``: a real single-node Apache Kafka (KRaft) from Maven-resolved jars."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("broker", help="run a local Apache Kafka broker (no Docker)")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--data-dir", type=Path, default=None, help="kept across restarts (default: ./var/kafka)")
    p.add_argument("--resolve-only", action="store_true", help="download the jars with Maven and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tpipe import broker

    if args.resolve_only:
        print(broker.ensure_kafka_jars())
        return 0
    return int(broker.broker_main(args.port, args.data_dir or Path("var/kafka")) or 0)
