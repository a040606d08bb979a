"""``tpipe consume credits`` (the worker) and ``tpipe credits report`` (tables, optional PNG)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from consumers.credits.settings import CreditsSettings
from plumbing.cli_settings import add_settings_arguments, settings_from_args

if TYPE_CHECKING:
    from consumers.credits.worker import CreditsWorker

__all__ = ["build_worker", "register", "register_consume"]

_DB_DEST = "cfg__credits_db_url"


def _db_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db-url", dest=_DB_DEST, default=None, metavar="URL",
        help="credits database URL (env TPIPE_CREDITS_DB_URL; default sqlite:///var/credits.db)",
    )


def register_consume(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("credits", help="credits topic -> credits ledger, low-balance notification")
    _db_flag(p)
    add_settings_arguments(p, CreditsSettings, skip={"credits_db_url"})
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
    rep = cmds.add_parser("report", help="balance, usage per day and type, burn rate, projected run-out")
    _db_flag(rep)
    rep.add_argument("--days", type=int, default=14, help="days of daily usage to show (default 14)")
    rep.add_argument("--window-days", type=float, default=7.0, help="trailing window of the burn rate (default 7)")
    rep.add_argument("--as-of", default=None, help="report time, ISO (default: now)")
    rep.add_argument("--png", default=None, metavar="FILE", help="also draw daily usage and balance to this PNG")
    rep.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from consumers.credits.report import build_report, render_png, render_text
    from consumers.credits.store import CreditStore
    from consumers.sqlstore import make_engine
    from schemas.times import to_ms

    as_of = None
    if args.as_of:
        as_of = to_ms(args.as_of)
        if as_of is None:
            print(f"--as-of: not an ISO time: {args.as_of!r}", file=sys.stderr)
            return 2
    if args.days < 1:
        print("--days must be at least 1", file=sys.stderr)
        return 2
    settings = settings_from_args(CreditsSettings, args)
    engine = make_engine(settings.credits_db_url)
    try:
        store = CreditStore(engine)
        store.create_tables()
        report = build_report(store, days=args.days, window_days=args.window_days, as_of_ms=as_of)
        print(render_text(report))
        if args.png:
            print(f"\nchart: {render_png(report, args.png)}")
    finally:
        engine.dispose()
    return 0
