"""``tpipe dlq list|show|redrive|stats``: the dead-letter topic as something you can work with.

Each command calls the package's functions (``reader``, ``redrive``, ``stats``), which return data;
this module only parses the flags and renders (``plumbing.output``: table, json or csv).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from typing import Any

from consumers.command import UsageError, run_command
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.output import add_format_argument, console_for, emit, emit_json, is_terminal
from plumbing.settings import KafkaSettings

__all__ = ["register"]

_EVENT_ID = re.compile(r"[0-9a-f]{32}")
_TIMES = "ISO-8601, epoch ms, 'now' or relative (30m, 2h, 7d: ago)"


def _add_filters(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("selection (all given must hold)")
    f.add_argument("--worker", action="append", default=[], metavar="WORKER",
                   help="dead-lettered by this worker: receiver, telemetry, alerts, credits (repeatable)")
    f.add_argument("--error-type", action="append", default=[], metavar="TYPE",
                   help="this dlq_error_type, e.g. SchemaValidationError, DecodeError (repeatable)")
    f.add_argument("--from", dest="from_time", metavar="T1", help=f"dead-lettered at or after T1 ({_TIMES})")
    f.add_argument("--to", dest="to_time", metavar="T2", help="dead-lettered before T2")
    f.add_argument("--vin", action="append", default=[], metavar="VIN", help="this vehicle (repeatable)")


def _filter(args: argparse.Namespace, ids: list[str] | None = None) -> Any:
    from consumers.dlq.reader import DlqFilter, parse_position
    from schemas.times import parse_time_ms

    try:
        from_ms = parse_time_ms(args.from_time) if getattr(args, "from_time", None) else None
        to_ms = parse_time_ms(args.to_time) if getattr(args, "to_time", None) else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    positions, offsets, event_ids = set(), set(), set()
    for text in ids or ():
        pos = parse_position(text)
        if pos is not None:
            positions.add(pos)
        elif text.isdigit():
            offsets.add(int(text))
        elif _EVENT_ID.fullmatch(text.lower()):
            event_ids.add(text.lower())
        else:
            raise UsageError(f"not a dead letter: {text!r} (give PARTITION:OFFSET, OFFSET or a 32-hex EVENT_ID)")
    return DlqFilter(frozenset(getattr(args, "worker", ())), frozenset(getattr(args, "error_type", ())), from_ms,
                     to_ms, frozenset(getattr(args, "vin", ())), frozenset(positions), frozenset(offsets),
                     frozenset(event_ids))


def _settings(args: argparse.Namespace) -> KafkaSettings:
    """The Kafka settings; says on stderr which DLQ the command reads."""
    from consumers.stores import announce_store
    from schemas.topics import dlq_topic

    settings = settings_from_args(KafkaSettings, args)
    announce_store("dead letters", f"{dlq_topic(settings.topic_prefix)} on {settings.kafka}")
    return settings


# --- list ---------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    from consumers.dlq.reader import read_dlq

    def body() -> None:
        flt = _filter(args)
        records = asyncio.run(read_dlq(_settings(args), flt, limit=args.limit or None))
        rows = [r.row() for r in records]
        if args.format == "table":
            for row in rows:  # one line per record: the reason cut to fit
                row["reason"] = _cut(row["reason"], 70)
        emit(["dlq", "at", "worker", "error_type", "reason", "source", "event_id"], rows, fmt=args.format,
             caption=f"{len(rows)} dead letter(s)" + (f" (the newest {args.limit})" if args.limit and
                                                      len(rows) == args.limit else ""))

    return run_command("dlq list", body)


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --- show ---------------------------------------------------------------------------------------
def _show(args: argparse.Namespace) -> int:
    from consumers.dlq.reader import read_dlq

    def body() -> int:
        records = asyncio.run(read_dlq(_settings(args), _filter(args, args.id)))
        if not records:
            print(f"tpipe dlq show: no dead letter {' '.join(args.id)} in the DLQ", file=sys.stderr)
            return 1
        if args.format == "json":
            emit_json([r.to_dict() for r in records])
            return 0
        for i, r in enumerate(records):
            if i:
                print()
            _show_one(r)
        return 0

    return run_command("dlq show", body)


def _show_one(r: Any) -> None:
    import orjson

    facts = {k: v for k, v in r.to_dict().items() if k not in ("headers", "value", "reason")}
    emit(["field", "value"], [{"field": k, "value": v} for k, v in facts.items() if v is not None],
         title=f"dead letter {r.position}")
    print("\nreason:\n  " + r.reason.replace("\n", "\n  "))
    print("\nheaders:")
    emit(["header", "value"], [{"header": k, "value": v} for k, v in r.header.items() if k != "dlq_error"])
    print("\nvalue:")
    value = r.payload()
    if isinstance(value, str) or value is None:
        print(value if value is not None else "(none)")
    elif is_terminal(sys.stdout):
        from rich.json import JSON

        console_for(sys.stdout).print(JSON(orjson.dumps(value).decode()))
    else:
        print(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


# --- redrive ------------------------------------------------------------------------------------
def _redrive(args: argparse.Namespace) -> int:
    from consumers.dlq.redrive import execute_redrive, plan_redrive
    from consumers.replay.sinks import UrlSink

    def body() -> None:
        if not (args.all or args.id or args.worker or args.error_type or args.from_time or args.to_time or args.vin):
            raise UsageError("select the dead letters to redrive: --worker, --error-type, --from/--to, --vin, "
                             "--id, or --all")
        settings = _settings(args)
        url_sink = None
        if args.to_url:
            url_sink = UrlSink(args.to_url, args.token or os.environ.get("TPIPE_REPLAY_TOKEN"),
                               timeout_s=args.http_timeout)
        plan = asyncio.run(plan_redrive(settings, _filter(args, args.id), to_topic=args.to_topic,
                                        to_url_shown=url_sink.shown_url if url_sink else None, force=args.force))
        if not args.dry_run:
            if plan.to_send:
                plan = asyncio.run(execute_redrive(settings, plan, url_sink=url_sink, show_progress=args.progress))
            else:
                plan.sent = 0
        _render_redrive(plan, args.format)

    return run_command("dlq redrive", body)


def _render_redrive(plan: Any, fmt: str) -> None:
    if fmt == "json":
        emit_json(plan.to_dict())
        return
    rows = [i.row() for i in plan.items]
    if fmt == "csv":
        emit(["dlq", "at", "worker", "error_type", "event_id", "action", "target", "note"], rows, fmt="csv")
        return
    if plan.sent is None:
        head = "DRY RUN: nothing was sent."
    else:
        head = f"redriven: {plan.sent} record(s)." if plan.sent else "nothing to send."
    print(f"{head} selected {len(plan.items)}, to send {len(plan.to_send)}, skipped {len(plan.skipped)}",
          flush=True)
    if rows:
        emit(["dlq", "at", "worker", "error_type", "event_id", "action", "target", "note"], rows)


# --- stats --------------------------------------------------------------------------------------
def _stats(args: argparse.Namespace) -> int:
    from consumers.dlq.stats import dlq_stats

    def body() -> None:
        stats = asyncio.run(dlq_stats(_settings(args), _filter(args), bucket=args.by))
        if args.format == "json":
            emit_json(stats.to_dict())
            return
        emit(["worker", "error_type", "count", "redriven", "first", "last"], stats.totals, fmt=args.format,
             title="dead letters by worker and error type", caption=f"{stats.total} in all")
        print()
        emit(["bucket", "worker", "error_type", "count"], stats.by_time, fmt=args.format,
             title=f"per {args.by} (UTC, when dead-lettered)")

    return run_command("dlq stats", body)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = sub.add_parser("dlq", help="list, show, redrive and count dead-lettered records",
                         description="Work with <prefix>.dlq: what was dead-lettered, why, and sending it back "
                                     "once the cause is fixed (docs/operations.md, 'Dead letters').")
    cmds = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("list", help="dead letters with time, worker, error type, reason and source")
    _add_filters(p)
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the newest N (default: all)")
    add_format_argument(p)
    add_settings_arguments(p, KafkaSettings)
    p.set_defaults(func=_list)

    p = cmds.add_parser("show", help="one dead letter: its headers and its payload",
                        description="ID is PARTITION:OFFSET in the DLQ (as `list` shows), an OFFSET (in any "
                                    "partition) or the EVENT_ID of the dead-lettered event.")
    p.add_argument("id", nargs="+", metavar="ID", help="PARTITION:OFFSET, OFFSET or EVENT_ID")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (readable) or json (default table)")
    add_settings_arguments(p, KafkaSettings)
    p.set_defaults(func=_show)

    p = cmds.add_parser(
        "redrive", help="send selected dead letters back to their topic (or --to-topic / --to-url), once",
        description="Each selected dead letter is sent back once: to the topic it came from (or --to-topic), or "
                    "POSTed to a receiver (--to-url; the only way for a webhook body the receiver could not "
                    "parse). Each redrive is recorded in <prefix>.dlq.redriven: redriving the same selection "
                    "again does nothing unless --force.",
    )
    _add_filters(p)
    p.add_argument("--id", action="append", default=[], metavar="ID",
                   help="this dead letter: PARTITION:OFFSET, OFFSET or EVENT_ID (repeatable)")
    p.add_argument("--all", action="store_true", help="every dead letter (no other selection needed)")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--to-topic", metavar="NAME", help="send to this topic instead of each record's source topic")
    t.add_argument("--to-url", metavar="URL", help="POST to a webhook receiver (bodies as received, events' payloads)")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="bearer token for --to-url (env TPIPE_REPLAY_TOKEN; prefer it: flags show in ps)")
    p.add_argument("--http-timeout", type=float, default=30.0, metavar="SECONDS", help="per request, --to-url")
    p.add_argument("--dry-run", action="store_true", help="show what would be sent and what skipped; send nothing")
    p.add_argument("--force", action="store_true", help="send also what was redriven before")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    add_format_argument(p)
    add_settings_arguments(p, KafkaSettings)
    p.set_defaults(func=_redrive)

    p = cmds.add_parser("stats", help="dead letters counted by worker and error type, per hour or day")
    _add_filters(p)
    p.add_argument("--by", choices=("hour", "day"), default="hour", help="time bucket (default hour)")
    add_format_argument(p)
    add_settings_arguments(p, KafkaSettings)
    p.set_defaults(func=_stats)
