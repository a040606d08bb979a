"""Overview: the verdict, every receiver, events per minute per type, worker lag, the DLQ.

Everything here comes from the background samples (``Console.sample_forever``): the page itself
waits on nothing but the first sample, and refreshes its body every ``--console-refresh-s``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tpipe.console.app import Console
from tpipe.console.receivers import WINDOW_S, ReceiverWatch
from tpipe.console.verdict import span, verdict

TITLE = "Overview"
PATH = "/"


def _last_non_2xx(r: ReceiverWatch, started_at: float, now: float) -> str:
    if r.last_non_2xx_at is not None:
        return f"{span(now - r.last_non_2xx_at)} ago"
    earlier = int(r.non_2xx_before_watch or 0)
    if earlier:
        return f"before {time.strftime('%H:%M:%S', time.gmtime(started_at))} UTC ({earlier} since the receiver started)"
    return f"none seen (watching for {span(now - started_at)})"


def _receiver_row(r: ReceiverWatch, console: Console, now: float) -> dict[str, Any]:
    latest = r.latest()
    st = latest.status if latest is not None and latest.reachable else {}
    spool = st.get("spool") or {}
    fw = st.get("forwarder") or {}
    broker = st.get("broker") or {}
    return {
        "url": r.url,
        "reachable": latest is not None and latest.reachable,
        "error": latest.error if latest is not None else "not sampled yet",
        "ready": latest.ready if latest is not None else None,
        "durability": st.get("durability"),
        "depth": spool.get("pending_events"),
        "oldest": spool.get("oldest_age_s"),
        "bytes": spool.get("pending_bytes"),
        "max_bytes": spool.get("max_bytes"),
        "forwarder": fw,
        "broker": broker,
        "answers": r.answers_recently(),
        "last_non_2xx": _last_non_2xx(r, console.started_at, now),
    }


def routes(console: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        if not console.sampled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(console.sampled.wait(), 5.0)
        now = time.time()
        snap = console.kafka.latest()
        per_minute = console.kafka.per_minute()
        return console.render(request, "overview.html", {
            "title": TITLE,
            "verdict": verdict(console.receivers, console.kafka, now),
            "receivers": [_receiver_row(r, console, now) for r in console.receivers],
            "kafka": snap,
            "kafka_since": console.kafka.unreachable_since,
            "bootstrap": console.settings.kafka,
            "per_minute": sorted(per_minute.items(), key=lambda kv: -kv[1]),
            "window_s": WINDOW_S,
            "sampled_at": max([s.at for r in console.receivers if (s := r.latest())] + [snap.at if snap else 0]),
            "now": now,
        })

    return [Route(PATH, page, methods=["GET"])]
