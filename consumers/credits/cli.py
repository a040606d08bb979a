"""``tpipe consume credits`` (the worker) and ``tpipe credits report`` (tables, optional PNG)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from consumers.command import UsageError, run_command
from consumers.credits.settings import CreditsSettings
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.output import add_format_argument

if TYPE_CHECKING:
    from consumers.credits.worker import CreditsWorker

__all__ = ["build_worker", "register", "register_consume"]

_DB_FLAG = {"credits_db_url": "db-url"}
_HOW_TO_SET = "--db-url or TPIPE_CREDITS_DB_URL"


def register_consume(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("credits", help="credits topic -> credits ledger, low-balance notification")
    add_settings_arguments(p, CreditsSettings, rename=_DB_FLAG)
    p.set_defaults(func=_consume)


def build_worker(settings: CreditsSettings) -> CreditsWorker:
    """The worker for ``settings`` (used by ``tpipe run``)."""
    from consumers.credits.worker import CreditsWorker

    return CreditsWorker(settings)


def _consume(args: argparse.Namespace) -> int:
    from consumers.notify.settings import run_notifying_worker

    settings = settings_from_args(CreditsSettings, args)
    return run_notifying_worker("consume credits", settings, settings.credits_db_url, lambda: build_worker(settings))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("credits", help="Teslemetry credit usage from the credits ledger")
    cmds = p.add_subparsers(dest="credits_command", required=True, metavar="COMMAND")
    rep = cmds.add_parser(
        "report", help="balance, usage per day and type, burn rate, projected run-out",
        description="The report is as of the ledger's newest event (or --as-of): its tables cover the --days "
                    "UTC days ending with that day, and the burn rate the --window-days before it.",
    )
    add_settings_arguments(rep, CreditsSettings, rename=_DB_FLAG,
                           skip=set(CreditsSettings.model_fields) - {"credits_db_url", "home"})
    rep.add_argument("--days", type=int, default=14, metavar="DAYS",
                     help="days of usage in the per-day and per-type tables (default 14)")
    rep.add_argument("--window-days", type=float, default=7.0, metavar="DAYS",
                     help="trailing window of the burn rate (default 7)")
    rep.add_argument("--as-of", default=None, metavar="TIME",
                     help="report time, ISO-8601 (default: the newest event in the ledger)")
    rep.add_argument("--png", default=None, metavar="FILE", help="also draw daily usage and balance to this PNG")
    add_format_argument(rep)
    rep.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    def body() -> None:
        from consumers.credits.report import build_report, render_png, render_report
        from consumers.credits.store import CreditStore
        from consumers.sqlstore import redact_url
        from consumers.stores import announce_store, open_existing_database, sqlite_file
        from schemas.times import to_ms

        as_of = None
        if args.as_of:
            as_of = to_ms(args.as_of)
            if as_of is None:
                raise UsageError(f"--as-of: not an ISO time: {args.as_of!r}")
        if args.days < 1:
            raise UsageError("--days must be at least 1")
        url = settings_from_args(CreditsSettings, args).credits_db_url
        engine = open_existing_database(url, what="credits database", how_to_set=_HOW_TO_SET,
                                        tables=("credit_events", "credit_state"))
        announce_store("credits database", str(sqlite_file(url) or redact_url(url)))
        try:
            report = build_report(CreditStore(engine), days=args.days, window_days=args.window_days, as_of_ms=as_of)
            render_report(report, fmt=args.format)
            if args.png:
                print(f"chart: {render_png(report, args.png)}", file=sys.stderr)
        finally:
            engine.dispose()

    return run_command("credits report", body)
