"""``tpipe consume alerts`` (the worker) and ``tpipe alerts active|history|errors`` (tables)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consumers.alerts.settings import AlertsSettings
from plumbing.cli_settings import add_settings_arguments, settings_from_args

if TYPE_CHECKING:
    from consumers.alerts.store import AlertStore
    from consumers.alerts.worker import AlertsWorker

__all__ = ["build_worker", "parse_since", "register", "register_consume"]

_DB_DEST = "cfg__alerts_db_url"


def _db_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db-url", dest=_DB_DEST, default=None, metavar="URL",
        help="alerts database URL (env TPIPE_ALERTS_DB_URL; default sqlite:///var/alerts.db)",
    )


def register_consume(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="alerts + errors topics -> alerts database, notifications by rules")
    _db_flag(p)
    p.add_argument("--rules", dest="cfg__alert_rules", default=None, metavar="FILE",
                   help="notification rules, YAML or JSON (env TPIPE_ALERT_RULES); default: Customer alerts")
    add_settings_arguments(p, AlertsSettings, skip={"alerts_db_url", "alert_rules"})
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
    _db_flag(active)
    active.add_argument("--vin", default=None)
    active.set_defaults(func=_active)
    _add_listing(cmds, "history", "alert occurrences (newest first), with start and end", _history)
    _add_listing(cmds, "errors", "vehicle errors (newest first), with their tags", _errors)


def _add_listing(
    cmds: argparse._SubParsersAction, name: str, help: str, func: Callable[[argparse.Namespace], int]  # type: ignore[type-arg]
) -> None:
    """A newest-first listing command: --db-url, --vin, --since, --limit."""
    p = cmds.add_parser(name, help=help)
    _db_flag(p)
    p.add_argument("--vin", default=None)
    p.add_argument("--since", default=None, help="ISO time or a duration back from now: 90m, 24h, 7d")
    p.add_argument("--limit", type=int, default=200)
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
    from consumers.alerts.store import AlertStore
    from consumers.sqlstore import make_engine

    settings = settings_from_args(AlertsSettings, args)
    store = AlertStore(make_engine(settings.alerts_db_url))
    store.create_tables()
    return store


def _duration(start_ms: int, end_ms: int | None) -> str:
    if end_ms is None:
        return ""
    s = max(0, (end_ms - start_ms) // 1000)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _text(d: dict[str, str]) -> str:
    t = d.get("customerFacingMessage1") or d.get("description") or ""
    return t if len(t) <= 60 else t[:57] + "..."


def _active(args: argparse.Namespace) -> int:
    from consumers.sqlstore import render_table

    rows = _store(args).active(vin=args.vin)
    print(render_table(
        ["vin", "alert", "audiences", "started_at", "notified", "description"],
        [(r["vin"], r["name"], ",".join(r["audiences"]), r["started_at"], "yes" if r["notification_id"] else "",
          _text(r["details"])) for r in rows],
    ))
    print(f"{len(rows)} active alert(s)")
    return 0


def _print_listing(
    args: argparse.Namespace,
    fetch: Callable[[AlertStore, int | None], list[dict[str, Any]]],
    headers: list[str],
    cells: Callable[[dict[str, Any]], tuple[Any, ...]],
    noun: str,
) -> int:
    """A listing command's body: --since parsed (2 when it is not a time), rows fetched and printed."""
    from consumers.sqlstore import render_table

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    rows = fetch(_store(args), since)
    print(render_table(headers, [cells(r) for r in rows]))
    print(f"{len(rows)} {noun}")
    return 0


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
