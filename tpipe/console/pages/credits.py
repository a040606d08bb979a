"""Credits: balance, burn rate, projected run-out, usage per day and per type (a chart), from the
credits ledger through ``consumers.credits.report.build_report`` (what ``tpipe credits report`` prints)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consumers.credits.report import build_report
from consumers.credits.store import CreditStore
from consumers.errors import StoreMissingError
from tpipe.console import svg
from tpipe.console.app import Console

TITLE = "Credits"
PATH = "/credits"


def routes(console: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        try:
            days = max(1, min(int(request.query_params.get("days") or 14), 366))
        except ValueError:
            days = 14
        ctx = {"title": TITLE, "days": days, "missing": None}
        try:
            store = CreditStore(console.credits.engine())
        except StoreMissingError as exc:
            return console.render(request, "credits.html", {**ctx, "missing": str(exc)})
        report, ms = await console.blocking(lambda: build_report(store, days=days))
        chart = svg.bars(f"credits used per day (UTC), last {days} days",
                         [(d["day"][5:], float(d["cost"])) for d in report.by_day], unit="credits")
        balance = svg.time_series("balance at the end of the day", [
            (int(_day_ms(d["day"])), float(d["balance"])) for d in report.by_day if d["balance"] is not None])
        return console.render(request, "credits.html", {**ctx, "r": report, "chart": chart, "balance_chart": balance,
                                                        "query_ms": ms, "where": console.credits.where()})

    return [Route(PATH, page, methods=["GET"])]


def _day_ms(day: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
