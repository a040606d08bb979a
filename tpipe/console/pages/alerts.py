"""Alerts: the alerts active now and the history of occurrences (VIN, window, limit), and vehicle
errors, from the alerts worker's database through ``consumers.alerts.store.AlertStore``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consumers.alerts.store import AlertStore
from consumers.errors import StoreMissingError
from tpipe.console.app import Console
from tpipe.console.pages.common import query_of

TITLE = "Alerts"
PATH = "/alerts"


def routes(console: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        q = query_of(request, console.settings, default_since="7d")
        name = (request.query_params.get("name") or "").strip()
        ctx = {"title": TITLE, "q": q, "form": {**q.form, "name": name}, "missing": None}
        try:
            store = AlertStore(console.alerts.engine())
        except StoreMissingError as exc:
            return console.render(request, "alerts.html", {**ctx, "missing": str(exc)})

        def read() -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:
            active = store.active(vin=q.vin)
            history = [r for r in store.history(vin=q.vin, since_ms=q.since_ms, limit=q.limit)
                       if int(r["started_at_ms"]) < q.until_ms]
            errors = [r for r in store.errors(vin=q.vin, since_ms=q.since_ms, limit=q.limit)
                      if int(r["created_at_ms"]) < q.until_ms]
            if name:
                active = [r for r in active if name.lower() in str(r["name"]).lower()]
                history = [r for r in history if name.lower() in str(r["name"]).lower()]
                errors = [r for r in errors if name.lower() in str(r["name"]).lower()]
            return active, history, errors

        (active, history, errors), ms = await console.blocking(read)
        return console.render(request, "alerts.html", {**ctx, "active": active, "history": history,
                                                       "errors": errors, "query_ms": ms,
                                                       "where": console.alerts.where()})

    return [Route(PATH, page, methods=["GET"])]
