"""The console's Starlette app: shared state (``Console``), the background sampler, the pages.

Each page is a module of ``tpipe.console.pages`` with ``TITLE``, ``PATH`` and ``routes(console)``; the
navigation lists ``pages.PAGES`` in order, so a page is added by writing its module and naming it
there. Pages render Jinja2 templates (``templates/``) with the console's own CSS and JS (``static/``);
charts are inline SVG (``tpipe.console.svg``); long actions (replay, redrive) are jobs
(``tpipe.console.jobs``). An ``HTTPException`` a page raises is shown as a page of its own, with the
navigation and the reason in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tpipe.console.access import AccessMiddleware
from tpipe.console.jobs import JobBoard
from tpipe.console.kafka_view import KafkaWatch
from tpipe.console.receivers import ReceiverWatch
from tpipe.console.settings import ConsoleSettings
from tpipe.console.stores import LakeStore, SqlStore
from tpipe.console.verdict import span

__all__ = ["Console", "build_app"]

log = logging.getLogger("tpipe.console")
HERE = Path(__file__).parent
RECEIVER_TIMEOUT_S = 2.0  # a receiver slower than this to answer /readyz counts as not answering
KAFKA_TIMEOUT_S = 5.0  # one Kafka sample (clients made again after a failure included)
T = TypeVar("T")


class Console:
    """What every page reads: the settings, the watches (sampled in the background), the stores."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.receivers = [ReceiverWatch(u) for u in settings.receiver_url]
        self.kafka = KafkaWatch(settings, settings.group_ids())
        self.lake = LakeStore(settings)
        self.alerts = SqlStore("alerts database", settings.alerts_db_url,
                               ("alert_occurrences", "alert_events", "vehicle_errors"),
                               "--alerts-db-url or TPIPE_ALERTS_DB_URL")
        self.credits = SqlStore("credits database", settings.credits_db_url, ("credit_events", "credit_state"),
                                "--credits-db-url or TPIPE_CREDITS_DB_URL")
        self.jobs = JobBoard()
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters["span"] = span
        self.templates.env.filters["clock"] = _clock
        self.sampled = asyncio.Event()

    async def sample_forever(self) -> None:
        """Sample the receivers and Kafka every ``--console-sample-s``, each in its own loop (a Kafka
        that hangs does not delay the receivers' samples)."""
        async with httpx.AsyncClient() as client:
            await asyncio.gather(
                self._every(lambda: asyncio.gather(*(r.sample(client, RECEIVER_TIMEOUT_S) for r in self.receivers))),
                self._every(lambda: self.kafka.sample(KAFKA_TIMEOUT_S)),
            )

    async def _every(self, sample: Callable[[], Awaitable[Any]]) -> None:
        while True:
            started = time.monotonic()
            try:
                await sample()
            except Exception:  # the sampler must outlive any one failure
                log.exception("console sampling failed")
            if self.kafka.latest() is not None and all(r.latest() for r in self.receivers):
                self.sampled.set()
            await asyncio.sleep(max(0.1, self.settings.console_sample_s - (time.monotonic() - started)))

    async def blocking(self, fn: Callable[[], T]) -> tuple[T, float]:
        """``fn()`` in a worker thread (a lake scan, a database query) and the milliseconds it took."""
        t0 = time.perf_counter()
        out = await asyncio.to_thread(fn)
        return out, (time.perf_counter() - t0) * 1000

    def render(self, request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
        from tpipe.console.pages import PAGES

        started = getattr(request.state, "started", None)
        ctx = {
            "nav": [(p.TITLE, p.PATH) for p in PAGES],
            "csrf": getattr(request.state, "csrf", ""),
            "user": getattr(request.state, "user", ""),
            "path": request.url.path,
            "render_ms": (time.perf_counter() - started) * 1000 if started else None,
            "refresh_s": self.settings.console_refresh_s,
            **context,
        }
        return self.templates.TemplateResponse(request, template, ctx, status_code=status_code)


def _clock(ms: int | float | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def build_app(settings: ConsoleSettings, *, sample: bool = True) -> Starlette:
    """The console for ``settings``; ``sample=False`` leaves out the background sampler (tests of one page)."""
    from tpipe.console.pages import PAGES

    console = Console(settings)
    routes: list[BaseRoute] = [Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    for page in PAGES:
        routes.extend(page.routes(console))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(console.sample_forever()) if sample else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await console.kafka.close()

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return console.render(request, "error.html", {"title": f"{exc.status_code}", "reason": exc.detail},
                              status_code=exc.status_code)

    password = settings.console_password.get_secret_value() if settings.console_password else None
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: refused},
        middleware=[Middleware(_Timing), Middleware(AccessMiddleware, user=settings.console_user, password=password)],
    )
    app.state.console = console
    return app


class _Timing:
    """Notes when a request started, for the 'rendered in N ms' line of each page."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["started"] = time.perf_counter()
        await self.app(scope, receive, send)
