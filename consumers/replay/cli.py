"""``tpipe replay``: history from Kafka by event time (``tpipe lake replay``, from the lake, is
``consumers.replay.lake_cli``; both take ``consumers.replay.arguments``)."""

from __future__ import annotations

import argparse
import asyncio

from consumers.command import run_command
from consumers.replay.arguments import add_selection_arguments, selection_from_args, sink_from_args
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.settings import KafkaSettings

__all__ = ["register"]


def _run_replay(args: argparse.Namespace) -> int:
    from consumers.replay.engine import render_kafka_plan, replay_kafka

    def body() -> None:
        settings = settings_from_args(KafkaSettings, args)
        sink = sink_from_args(args, settings)
        sel = selection_from_args(args)
        plan = asyncio.run(replay_kafka(settings, sel, sink, rate=args.rate, show_progress=args.progress))
        render_kafka_plan(plan, fmt=args.format)

    return run_command("replay", body)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="replay history from Kafka by event time to a topic, a file or a webhook URL",
        description="Replay the events whose created_at is in [--from, --to) from the event topics, each "
                    "event_id once (redelivered copies are left out). Uses no consumer group and commits "
                    "nothing; stops at the end offsets seen at start.",
    )
    add_selection_arguments(p, kafka=True)
    add_settings_arguments(p, KafkaSettings)
    p.set_defaults(func=_run_replay)
