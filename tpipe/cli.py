"""``tpipe``: one console script, one sub-command per job.

Each package contributes its own sub-commands through a ``register(subparsers)`` function, so this
module only assembles the tree; every handler is ``args.func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules exposing ``register(subparsers)``; ``consume`` workers expose ``register_consume(subparsers)``.
TOP_LEVEL = (
    "tpipe.broker_cli",
    "ingest.cli",
    "consumers.cli",
    "consumers.lake.cli",
    "consumers.alerts.cli",
    "consumers.credits.cli",
    "consumers.replay.cli",
    "tpipe.run_all",
)
WORKERS = (
    "consumers.lake.cli",
    "consumers.alerts.cli",
    "consumers.credits.cli",
)


def _load(name: str) -> object | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:  # a package not built yet; anything else is a real error
        if exc.name and name.startswith(exc.name):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpipe", description="Teslemetry webhooks into Kafka and beyond.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env TPIPE_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    consume = sub.add_parser("consume", help="run one consumer worker")
    consume_sub = consume.add_subparsers(dest="worker", required=True, metavar="WORKER")
    for name in WORKERS:
        mod = _load(name)
        if mod is not None and hasattr(mod, "register_consume"):
            mod.register_consume(consume_sub)
    for name in TOP_LEVEL:
        mod = _load(name)
        if mod is not None and hasattr(mod, "register"):
            mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    from tpipe.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level or os.environ.get("TPIPE_LOG_LEVEL", "INFO"))
    rc = args.func(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
