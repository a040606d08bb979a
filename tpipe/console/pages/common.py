"""What the pages share: the time window and limit of a query, read from the query string."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request

from consumers.lake.scan import Window
from schemas.times import now_ms, parse_time_ms
from tpipe.console.settings import ConsoleSettings

__all__ = ["Query", "query_of"]


@dataclass(slots=True)
class Query:
    """A page's bounded question: a VIN (or all), ``[since_ms, until_ms)``, at most ``limit`` rows."""

    vin: str | None
    since_ms: int
    until_ms: int
    limit: int
    form: dict[str, str]  # what the user typed, to show in the form again
    error: str | None = None

    def window(self, vin: str | None = None) -> Window:
        return Window(vin if vin is not None else self.vin, _dt(self.since_ms), _dt(self.until_ms))

    @property
    def hours(self) -> float:
        return (self.until_ms - self.since_ms) / 3_600_000


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def query_of(request: Request, settings: ConsoleSettings, *, default_since: str = "24h") -> Query:
    """The window and limit of ``request`` (``since``, ``until``, ``limit``, ``vin``), clamped to the
    console's bounds; a value that does not parse leaves the default and sets ``error``."""
    p = request.query_params
    form = {"since": p.get("since") or default_since, "until": p.get("until") or "", "limit": p.get("limit") or "",
            "vin": (p.get("vin") or "").strip()}
    now = now_ms()
    error = None
    try:
        until = parse_time_ms(form["until"], now=now) if form["until"] else now
        since = parse_time_ms(form["since"], now=until)  # "24h": the 24 hours before `until`
    except ValueError as exc:
        error = str(exc)
        until, since = now, parse_time_ms(default_since, now=now)
    longest = int(settings.console_max_window_days * 86_400_000)
    if until - since > longest:
        since = until - longest
        error = f"the window is at most {settings.console_max_window_days:g} days (--console-max-window-days)"
    if since >= until:
        error, since = "'since' must be before 'until'", until - 3_600_000
    limit = settings.console_query_limit
    if form["limit"]:
        try:
            limit = max(1, min(int(form["limit"]), settings.console_query_limit))
        except ValueError:
            error = f"limit: not a number: {form['limit']!r}"
    form["limit"] = str(limit)
    return Query(form["vin"] or None, since, until, limit, form, error)
