"""The replay selection and target arguments shared by ``tpipe replay`` (Kafka) and ``tpipe lake
replay`` (the lake): ``--types``, ``--from``, ``--to``, ``--vin``, and one of ``--to-topic``,
``--to-file``, ``--to-url`` or ``--dry-run``."""

from __future__ import annotations

import argparse
import os

from consumers.replay.dedup import DEFAULT_HORIZON_MS
from consumers.replay.selection import ReplayError, Selection
from consumers.replay.sinks import FileSink, Sink, TopicSink, UrlSink
from plumbing.output import add_format_argument
from plumbing.settings import KafkaSettings
from schemas.times import parse_duration_ms, parse_time_ms

__all__ = ["add_selection_arguments", "selection_from_args", "sink_from_args"]

_TIMES = "ISO-8601 (2025-05-02T07:31:12Z; no zone = UTC), epoch ms, 'now', or relative: 30m, 2h, 7d, 1w (ago)"


def add_selection_arguments(p: argparse.ArgumentParser, *, kafka: bool) -> None:
    sel = p.add_argument_group("selection")
    sel.add_argument("--types", action="append", metavar="TYPE[,TYPE]",
                     help="event types, comma separated or repeated (default: all)")
    sel.add_argument("--from", dest="from_time", metavar="T1",
                     help=f"first created_at included (default: the oldest kept). {_TIMES}")
    sel.add_argument("--to", dest="to_time", metavar="T2", help="created_at end, excluded (default: now)")
    sel.add_argument("--vin", action="append", default=[], metavar="VIN",
                     help="only this VIN (site id for energy events); repeatable")
    if kafka:
        sel.add_argument("--slack", default="1h", metavar="DURATION",
                         help="how late an event may arrive relative to later-created ones of its partition: "
                              "reading starts at from - slack and stops at the first record created after "
                              "to + slack (default 1h)")
        sel.add_argument("--dedup-horizon", default="24h", metavar="DURATION",
                         help="an event_id is emitted once; its redelivered copies are recognised while the "
                              "partition shows records received less than this after the first copy "
                              "(default 24h, Teslemetry's redelivery window; 0: for the whole window)")
    out = p.add_argument_group("target (one of them, or --dry-run)")
    target = out.add_mutually_exclusive_group()
    target.add_argument("--to-topic", metavar="NAME", help="re-publish the records to this Kafka topic")
    target.add_argument("--to-file", metavar="PATH", help="write envelope JSON lines to PATH ('-': stdout)")
    target.add_argument("--to-url", metavar="URL",
                        help="POST each event's payload (Teslemetry format) to a webhook receiver")
    out.add_argument("--token", default=None, metavar="TOKEN",
                     help="bearer token for --to-url (env TPIPE_REPLAY_TOKEN; prefer it: flags show in ps)")
    out.add_argument("--http-timeout", type=float, default=30.0, metavar="SECONDS", help="per request, --to-url")
    out.add_argument("--dry-run", action="store_true",
                     help="print per-partition offset ranges, the records read and the distinct matching "
                          "events (reads the ranges to count them), send nothing")
    out.add_argument("--rate", type=float, default=None, metavar="N", help="at most N events per second")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on stderr (default: only when stderr is a terminal)")
    add_format_argument(out)


def selection_from_args(args: argparse.Namespace) -> Selection:
    try:
        from_ms = parse_time_ms(args.from_time) if args.from_time else None
        to_ms = parse_time_ms(args.to_time) if args.to_time else None
        slack_ms = parse_duration_ms(getattr(args, "slack", "0") or "0")
        horizon = getattr(args, "dedup_horizon", None)
        horizon_ms = DEFAULT_HORIZON_MS if horizon is None else parse_duration_ms(horizon)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    return Selection.build(types=args.types, from_ms=from_ms, to_ms=to_ms, vins=args.vin, slack_ms=slack_ms,
                           dedup_horizon_ms=horizon_ms)


def sink_from_args(args: argparse.Namespace, settings: KafkaSettings) -> Sink | None:
    """The chosen target; None for --dry-run. Refuses when neither is given."""
    targets = [t for t in (args.to_topic, args.to_file, args.to_url) if t]
    if args.dry_run:
        if targets:
            raise ReplayError("--dry-run sends nothing: drop the target, or drop --dry-run")
        return None
    if args.rate is not None and args.rate <= 0:
        raise ReplayError("--rate must be positive")
    if args.to_topic:
        return TopicSink(settings, args.to_topic)
    if args.to_file:
        return FileSink(args.to_file)
    if args.to_url:
        token = args.token or os.environ.get("TPIPE_REPLAY_TOKEN")
        return UrlSink(args.to_url, token, timeout_s=args.http_timeout)
    raise ReplayError("choose a target: --to-topic NAME, --to-file PATH|-, --to-url URL, or --dry-run")
