"""Top-level ``tpipe consumers`` (``reset``) and ``tpipe topics`` (``create``, ``list``)."""

from __future__ import annotations

import argparse
import asyncio

from consumers.command import UsageError, run_command
from consumers.replay.selection import ReplayError
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.output import add_format_argument, emit
from plumbing.settings import KafkaSettings

__all__ = ["register"]

_TOPIC_FIELDS = {"topic_partitions", "topic_retention_ms", "topic_replication_factor", "topic_min_insync_replicas"}


def _run_reset(args: argparse.Namespace) -> int:
    from consumers.replay.reset import plan_rows, plan_title, reset_group
    from schemas.times import format_ms, parse_time_ms

    def body() -> None:
        settings = settings_from_args(KafkaSettings, args)
        try:
            to: int | str = args.to.lower() if args.to.lower() in ("earliest", "latest") else parse_time_ms(args.to)
        except ValueError as exc:
            raise UsageError(f"--to: {exc}") from None
        rows = asyncio.run(reset_group(settings, args.group, to, topics=args.topic or None, execute=args.execute))
        title = plan_title(args.group, to if isinstance(to, str) else format_ms(to), executed=args.execute)
        if args.format == "table":
            print(title, flush=True)
        emit(["topic", "partition", "current_offset", "new_offset"], plan_rows(rows), fmt=args.format)

    return run_command("consumers reset", body)


def _run_topics_create(args: argparse.Namespace) -> int:
    from consumers.replay.topics import create_topics, format_retention, parse_retention_ms

    def body() -> None:
        settings = settings_from_args(KafkaSettings, args)
        retention = parse_retention_ms(args.retention) if args.retention else None
        for flag, value in (("--partitions", args.partitions), ("--replication-factor", args.replication_factor),
                            ("--min-insync-replicas", args.min_insync_replicas)):
            if value is not None and value < 1:
                raise ReplayError(f"{flag} must be at least 1")
        created, existing, (rf, min_isr) = asyncio.run(create_topics(
            settings, retention_ms=retention, partitions=args.partitions,
            replication_factor=args.replication_factor, min_insync_replicas=args.min_insync_replicas,
        ))
        eff = retention if retention is not None else settings.topic_retention_ms
        ret = "broker default" if eff is None else format_retention(eff)
        parts = args.partitions or settings.topic_partitions
        for name in created:
            print(f"created {name} (partitions {parts}, replication factor {rf}, min.insync.replicas {min_isr}, "
                  f"retention {ret})")
        for name in existing:
            print(f"exists  {name} (unchanged; see `tpipe topics list`)")

    return run_command("topics create", body)


def _run_topics_list(args: argparse.Namespace) -> int:
    from consumers.replay.topics import format_retention, list_topics

    def body() -> None:
        infos = asyncio.run(list_topics(settings_from_args(KafkaSettings, args)))
        rows = [
            {"topic": i.name, "partitions": i.partitions, "replicas": i.replication, "min_isr": i.min_insync,
             "retention": format_retention(i.retention_ms), "retention_ms": i.retention_ms, "records": i.records,
             "exists": True}
            if i.exists
            else {"topic": i.name, "partitions": None, "replicas": None, "min_isr": None, "retention": "-",
                  "records": "(missing)", "exists": False}
            for i in infos
        ]
        emit(["topic", "partitions", "replicas", "min_isr", "retention", "records"], rows, fmt=args.format,
             null_text="-")

    return run_command("topics list", body)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    consumers = sub.add_parser("consumers", help="consumer-group tools (reset a stopped worker's position)")
    csub = consumers.add_subparsers(dest="consumers_command", required=True, metavar="ACTION")
    reset = csub.add_parser(
        "reset",
        help="move a stopped worker's group to a time (dry run unless --execute)",
        description="Move a consumer group's committed offsets to the first record at or after --to "
                    "(like kafka-consumer-groups --reset-offsets --to-datetime). Prints the plan; --execute "
                    "applies it. Refuses while the group has members, and for the lake (telemetry) worker, "
                    "whose position lives in the lake.",
    )
    reset.add_argument("--group", required=True, metavar="GROUP", help="consumer group, e.g. teslemetry.alerts")
    reset.add_argument("--to", required=True, metavar="T",
                       help="ISO-8601, epoch ms, relative (2h, 7d: ago), 'earliest' or 'latest'")
    reset.add_argument("--topic", action="append", default=[], metavar="TOPIC",
                       help="only these topics (repeatable; default: every topic the group has offsets for)")
    reset.add_argument("--execute", action="store_true", help="apply the plan (default: print it only)")
    add_format_argument(reset)
    add_settings_arguments(reset, KafkaSettings)
    reset.set_defaults(func=_run_reset)

    topics = sub.add_parser("topics", help="create and list the pipeline's Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = tsub.add_parser(
        "create",
        help="create the event, dlq and notifications topics that are missing",
        description="Create every topic of the contract that does not exist yet. Existing topics are not "
                    "changed (see docs/replay.md to change the retention of an existing topic).",
    )
    create.add_argument("--retention", metavar="DURATION",
                        help="retention.ms of new topics: 30d, 12h, 1w, or 'infinite' "
                             "(default: env TPIPE_TOPIC_RETENTION_MS, else the broker's default)")
    create.add_argument("--partitions", type=int, metavar="N",
                        help="partitions of new topics (default: env TPIPE_TOPIC_PARTITIONS, else 3)")
    create.add_argument("--replication-factor", type=int, metavar="N",
                        help="copies of each partition (default: env TPIPE_TOPIC_REPLICATION_FACTOR, else one per "
                             "broker, at most 3)")
    create.add_argument("--min-insync-replicas", type=int, metavar="N",
                        help="copies that must have a write before it is acknowledged (acks=all) (default: env "
                             "TPIPE_TOPIC_MIN_INSYNC_REPLICAS, else the replication factor minus one, 1 to 2)")
    add_settings_arguments(create, KafkaSettings, skip=_TOPIC_FIELDS)
    create.set_defaults(func=_run_topics_create)
    lst = tsub.add_parser("list", help="the topics with partitions, retention and record counts")
    add_format_argument(lst)
    add_settings_arguments(lst, KafkaSettings, skip=_TOPIC_FIELDS)
    lst.set_defaults(func=_run_topics_list)
