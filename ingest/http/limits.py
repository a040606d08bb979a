"""What the receiver's ASGI app refuses before the request path: a path asked on the wrong port, and
webhook requests beyond ``--max-concurrent-requests``.

``PortSplit``: with ``--ops-port`` the ops paths (``/healthz``, ``/readyz``, ``/metrics``) are served only
on the ops port and everything else (``/webhook``) only on the webhook port; the other port answers 404
as for any unknown path. The port is the one the connection came in on (``scope["server"]``), so one
server, one lifespan, one spool serve both.

``InflightGate``: counts webhook requests between their headers and their answer. Idle connections never
reach the app and so never count; a request over the limit gets 503 with Retry-After and a JSON reason
at once, without its body being read, and is counted (``tpipe_http_requests_total{status="503"}`` and
``tpipe_http_limited_total{limit="max_concurrent_requests"}``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from plumbing import metrics

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

ASGIHandler = Callable[[Scope, Receive, Send], Awaitable[None]]


class PortSplit:
    """Which port serves which path when an ops port is configured (``ops_port=None``: no split)."""

    def __init__(self, ops_port: int | None) -> None:
        self.ops_port = ops_port
        self._not_found = PlainTextResponse("Not Found", status_code=404)

    def misrouted(self, scope: Scope) -> bool:
        """True when the request's path belongs to the other port."""
        if self.ops_port is None:
            return False
        server = scope.get("server")
        on_ops_port = server is not None and server[1] == self.ops_port
        return on_ops_port != (scope["path"] in OPS_PATHS)

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._not_found(scope, receive, send)


class InflightGate:
    """At most ``limit`` webhook requests in the request path at once; the rest get 503 at once."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.inflight = 0
        self._body = orjson.dumps(
            {"error": "overloaded", "reason": f"more than {limit} webhook requests in flight; retry later"}
        )
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"retry-after", str(retry_after_s).encode()),
        ]
        self._retry_after = str(retry_after_s)
        self._http_503 = metrics.HTTP_REQUESTS.labels("503")
        self._limited = metrics.HTTP_LIMITED.labels("max_concurrent_requests")

    def refused(self) -> tuple[int, bytes, list[tuple[str, str]]]:
        """The 503 of a request over the limit, counted (for ``ingest.http.fast``)."""
        self._http_503.inc()
        self._limited.inc()
        return 503, self._body, [("Retry-After", self._retry_after)]

    async def run(self, handler: ASGIHandler, scope: Scope, receive: Receive, send: Send) -> None:
        if self.inflight >= self.limit:
            self._http_503.inc()
            self._limited.inc()
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.inflight += 1
        try:
            await handler(scope, receive, send)
        finally:
            self.inflight -= 1
