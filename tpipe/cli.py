"""``tpipe``: one console script, one sub-command per job — the composition root.

Only the module behind the chosen command is imported (``tpipe consume telemetry`` loads no receiver
code, ``tpipe serve`` no consumer code): the command table below names each command's help and the
modules that register it (``register(subparsers)``; workers ``register_consume(subparsers)``). Every
handler is ``args.func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

#: command -> (help, modules whose ``register(subparsers)`` adds it, in order)
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "run": ("run broker, receiver and workers locally (what `make run` does)", ("tpipe.run_all",)),
    "broker": ("run a local Apache Kafka broker (no Docker)", ("localbroker.cli",)),
    "serve": ("run the webhook receiver", ("ingest.cli",)),
    "token": ("manage webhook tokens (digests only are stored)", ("ingest.cli",)),
    "consume": ("run one consumer worker: telemetry, alerts or credits", ()),
    "lake": ("query and replay the Iceberg lake", ("consumers.lake.cli",)),  # + consumers.replay.lake_cli
    "alerts": ("active alerts and alert history", ("consumers.alerts.cli",)),
    "credits": ("the API credit ledger: balance and usage", ("consumers.credits.cli",)),
    "replay": ("replay history from Kafka to a topic, a file or a webhook URL", ("consumers.replay.cli",)),
    "dlq": ("list, show, redrive and count dead-lettered records", ("consumers.dlq.cli",)),
    "consumers": ("consumer groups: reset offsets to a time", ("consumers.cli",)),
    "topics": ("create and list the contract's topics", ("consumers.cli",)),
    "console": ("the operator's web console (overview, events, vehicles, alerts, credits, DLQ, replay, tokens)",
                ("tpipe.console.cli",)),
}
#: ``tpipe consume <worker>`` -> (help, module exposing ``register_consume``)
WORKERS: dict[str, tuple[str, str]] = {
    "telemetry": ("data/state/connectivity/vehicle_data into the Iceberg lake", "consumers.lake.cli"),
    "alerts": ("alerts and errors into alert states and notifications", "consumers.alerts.cli"),
    "credits": ("credit events into the exact credit ledger", "consumers.credits.cli"),
}


#: top-level options (before the command word) that take a value
_TOP_OPTIONS = ("--log-level", "--log-format")


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpipe", description="Teslemetry webhooks into Kafka and beyond.")
    parser.add_argument("--log-level", default=None, metavar="LEVEL",
                        help="DEBUG, INFO, WARNING or ERROR (env TPIPE_LOG_LEVEL; default INFO)")
    parser.add_argument("--log-format", default=None, choices=("console", "json"),
                        help="console: readable lines; json: one JSON object per line (env TPIPE_LOG_FORMAT; "
                             "default console when stderr is a terminal, else json)")
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word: the first argument that is not a top-level option or its value."""
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in _TOP_OPTIONS:
            i += 2
            continue
        if a.startswith(tuple(o + "=" for o in _TOP_OPTIONS)):
            i += 1
            continue
        return a if a in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for ``argv``'s command (its modules imported and registered), or, with no known
    command, the top-level parser that lists every command from the table."""
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = _command_of(argv)
    if command is None:
        for name, (help_text, _) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        return parser
    if command == "consume":
        _register_consume(sub, argv)
        return parser
    for module in COMMANDS[command][1]:
        group = importlib.import_module(module).register(sub)
        if command == "lake":  # `lake replay` lives with the replay tooling
            from consumers.replay.lake_cli import register_lake

            register_lake(group)
    return parser


def _register_consume(sub: argparse._SubParsersAction, argv: Sequence[str]) -> None:  # type: ignore[type-arg]
    consume = sub.add_parser("consume", help=COMMANDS["consume"][0])
    workers = consume.add_subparsers(dest="worker", required=True, metavar="WORKER")
    rest = list(argv)[list(argv).index("consume") + 1:]
    chosen = rest[0] if rest and rest[0] in WORKERS else None
    for name, (help_text, module) in WORKERS.items():
        if chosen is None or name == chosen:
            importlib.import_module(module).register_consume(workers)
        else:
            workers.add_parser(name, help=help_text)


def _command_name(args: argparse.Namespace) -> str:
    """``tpipe dlq list``-style name of the command that ran, for error lines."""
    words = [args.command]
    for key, value in vars(args).items():
        if key != "command" and key.endswith(("_command", "_cmd", "worker")) and isinstance(value, str):
            words.append(value)
    return " ".join(["tpipe", *words])


def main(argv: Sequence[str] | None = None) -> int:
    from pydantic import ValidationError

    from plumbing.logs import configure_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    if args.log_format:  # child processes (the forwarder, `tpipe run`'s workers) log the same way
        os.environ["TPIPE_LOG_FORMAT"] = args.log_format
    configure_logging(args.log_level or os.environ.get("TPIPE_LOG_LEVEL", "INFO"), args.log_format)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:  # a flag or TPIPE_ variable with a value its setting refuses
        print(f"{_command_name(args)}: error: {_settings_error(exc)}", file=sys.stderr)
        return 2


def _settings_error(exc: Any) -> str:
    """One line per refused setting, naming its flag and variable; never the value (it may be a secret)."""
    from plumbing.cli_settings import env_name, flag_name

    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err.get("loc") else ""
        where = f"{flag_name(field)} / {env_name(field)}: " if field else ""
        parts.append(where + str(err["msg"]))
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
