"""``tpipe consume alerts`` (the worker) and ``tpipe alerts active|history|errors`` (tables)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consumers.alerts.settings import AlertsSettings
from consumers.command import UsageError, run_command
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.output import add_format_argument, emit

if TYPE_CHECKING:
    from consumers.alerts.store import AlertStore
    from consumers.alerts.worker import AlertsWorker

__all__ = ["build_worker", "parse_since", "register", "register_consume"]

_DB_FLAG = {"alerts_db_url": "db-url", "alert_rules": "rules"}
_HOW_TO_SET = "--db-url or TPIPE_ALERTS_DB_URL"


def _db_flags(p: argparse.ArgumentParser) -> None:
    """--db-url and --home (the read commands' only settings)."""
    add_settings_arguments(p, AlertsSettings, rename=_DB_FLAG,
                           skip=set(AlertsSettings.model_fields) - {"alerts_db_url", "home"})


def register_consume(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="alerts + errors topics -> alerts database, notifications by rules")
    add_settings_arguments(p, AlertsSettings, rename=_DB_FLAG)
    p.set_defaults(func=_consume)


def build_worker(settings: AlertsSettings) -> AlertsWorker:
    """The worker for ``settings`` (used by ``tpipe run``)."""
    from consumers.alerts.worker import AlertsWorker

    return AlertsWorker(settings)


def _consume(args: argparse.Namespace) -> int:
    from consumers.errors import RulesError
    from consumers.notify.settings import run_notifying_worker

    settings = settings_from_args(AlertsSettings, args)
    return run_notifying_worker("consume alerts", settings, settings.alerts_db_url,
                                lambda: build_worker(settings), RulesError)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="show alerts from the alerts database")
    cmds = p.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")
    active = cmds.add_parser("active", help="alerts active now, per VIN")
    _db_flags(active)
    active.add_argument("--vin", default=None, metavar="VIN", help="only this vehicle")
    add_format_argument(active)
    active.set_defaults(func=_active)
    _add_listing(cmds, "history", "alert occurrences (newest first), with start and end", _history)
    _add_listing(cmds, "errors", "vehicle errors (newest first), with their tags", _errors)


def _add_listing(
    cmds: argparse._SubParsersAction, name: str, help: str, func: Callable[[argparse.Namespace], int]  # type: ignore[type-arg]
) -> None:
    """A newest-first listing command: --db-url, --vin, --since, --limit."""
    p = cmds.add_parser(name, help=help)
    _db_flags(p)
    p.add_argument("--vin", default=None, metavar="VIN", help="only this vehicle")
    p.add_argument("--since", default=None, metavar="TIME",
                   help="ISO time or a duration back from now: 90m, 24h, 7d (default: all)")
    p.add_argument("--limit", type=int, default=200, metavar="N", help="newest N rows (default 200)")
    add_format_argument(p)
    p.set_defaults(func=func)


def parse_since(text: str | None, *, now: datetime | None = None) -> int | None:
    """Epoch ms from an ISO time or a duration back from now (``30s``, ``90m``, ``24h``, ``7d``)."""
    from schemas.times import to_ms

    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        secs = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        base = now or datetime.now(UTC)
        return int(base.timestamp() * 1000 - secs * 1000)
    ms = to_ms(text)
    if ms is None:
        raise ValueError(f"--since: not an ISO time or a duration like 24h: {text!r}")
    return ms


def _store(args: argparse.Namespace) -> AlertStore:
    """The existing alerts database (never created here: ``consumers.stores``), announced on stderr."""
    from consumers.alerts.store import AlertStore
    from consumers.sqlstore import redact_url
    from consumers.stores import announce_store, open_existing_database, sqlite_file

    url = settings_from_args(AlertsSettings, args).alerts_db_url
    engine = open_existing_database(url, what="alerts database", how_to_set=_HOW_TO_SET,
                                    tables=("alert_occurrences", "vehicle_errors"))
    announce_store("alerts database", str(sqlite_file(url) or redact_url(url)))
    return AlertStore(engine)


def _duration(start_ms: int, end_ms: int | None) -> str:
    if end_ms is None:
        return ""
    s = max(0, (end_ms - start_ms) // 1000)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _text(d: dict[str, str]) -> str:
    t = d.get("customerFacingMessage1") or d.get("description") or ""
    return t if len(t) <= 60 else t[:57] + "..."


def _active(args: argparse.Namespace) -> int:
    def body() -> None:
        rows = _store(args).active(vin=args.vin)
        table = [
            {**r, "alert": r["name"], "audiences": ",".join(r["audiences"]),
             "notified": "yes" if r["notification_id"] else "", "description": _text(r["details"])}
            for r in rows
        ]
        emit(["vin", "alert", "audiences", "started_at", "notified", "description"],
             table if args.format != "json" else rows, fmt=args.format, caption=f"{len(rows)} active alert(s)")

    return run_command("alerts active", body)


def _print_listing(
    args: argparse.Namespace,
    fetch: Callable[[AlertStore, int | None], list[dict[str, Any]]],
    headers: list[str],
    cells: Callable[[dict[str, Any]], tuple[Any, ...]],
    noun: str,
) -> int:
    """A listing command's body: --since parsed (2 when it is not a time), rows fetched and printed."""

    def body() -> None:
        try:
            since = parse_since(args.since)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        rows = fetch(_store(args), since)
        shown = rows if args.format == "json" else [dict(zip(headers, cells(r), strict=True)) for r in rows]
        emit(headers, shown, fmt=args.format, caption=f"{len(rows)} {noun}")

    return run_command(f"alerts {args.alerts_command}", body)


def _history(args: argparse.Namespace) -> int:
    return _print_listing(
        args,
        lambda store, since: store.history(vin=args.vin, since_ms=since, limit=args.limit),
        ["vin", "alert", "audiences", "started_at", "ended_at", "duration", "notified"],
        lambda r: (r["vin"], r["name"], ",".join(r["audiences"]), r["started_at"], r["ended_at"] or "(active)",
                   _duration(r["started_at_ms"], r["ended_at_ms"]), "yes" if r["notification_id"] else ""),
        "occurrence(s)",
    )


def _errors(args: argparse.Namespace) -> int:
    return _print_listing(
        args,
        lambda store, since: store.errors(vin=args.vin, since_ms=since, limit=args.limit),
        ["vin", "error", "created_at", "tags", "body"],
        lambda r: (r["vin"], r["name"], r["created_at"], ",".join(f"{k}={v}" for k, v in sorted(r["tags"].items())),
                   (r["body"] or "")[:60]),
        "error(s)",
    )
