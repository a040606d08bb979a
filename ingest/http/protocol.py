"""The receiver's HTTP/1.1 protocol: uvicorn's httptools protocol plus the limits uvicorn lacks.

uvicorn bounds only the wait *between* requests (``timeout_keep_alive``). Within a request a client may
trickle its headers or its body forever, httptools buffers headers without any size limit, and
``limit_concurrency`` counts connections, so idle sockets would turn real requests into 503s. The
protocol class that ``edge_protocol(limits)`` returns adds, per connection:

- **header timeout**: from the connection's start (on a keep-alive connection: from the first byte of
  the next request) until the request headers are complete; then the connection is closed;
- **body timeout**: from the headers until the whole body is in; then the connection is cut and the
  app, which is waiting for the body, sees a disconnect (the webhook counts it as a 400);
- **header size**: a request line plus headers above ``max_header_bytes`` gets 431 and is closed;
- **connection cap** on the webhook port: a connection beyond ``max_connections`` gets 503 with
  Retry-After and is closed at once. Connections to the ops port are not counted, so probes and
  scrapes get through while the webhook port is full.

Every limit that applies is counted in ``tpipe_http_limited_total{limit=<setting name>}``.

Cost on the hot path: at most one timer per connection, (re)armed after a chunk has been parsed and only
when the connection is left in a phase (headers, body) other than the one its timer is for. A
request whose headers and body arrive in one chunk on a kept-alive connection arms none.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ingest.http.fast import FastRequest, FastWebhook
from ingest.settings import IngestSettings
from plumbing import metrics

log = logging.getLogger("tpipe.ingest.http")

# What a connection is waiting for.
_IDLE, _HEADERS, _BODY = 0, 1, 2


def refusal(status: int, error: str, reason: str, retry_after_s: int | None = None) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a JSON ``{"error", "reason"}`` body."""
    body = orjson.dumps({"error": error, "reason": reason})
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after_s is not None:
        head.append(f"retry-after: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


@dataclass
class EdgeLimits:
    """The limits of one server, shared by all its connections (with the count of open ones)."""

    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_connections: int
    retry_after_s: int
    ops_port: int | None = None
    webhook_connections: int = 0  # open connections counted against max_connections
    fast: FastWebhook | None = None  # POST /webhook without an ASGI cycle (ingest.http.fast), spool mode

    @classmethod
    def from_settings(cls, s: IngestSettings) -> EdgeLimits:
        return cls(s.header_timeout_s, s.body_timeout_s, s.max_header_bytes, s.max_connections,
                   s.retry_after_s, s.ops_port)

    def __post_init__(self) -> None:
        self.too_many_connections = refusal(
            503, "overloaded", f"more than {self.max_connections} open connections; retry later", self.retry_after_s
        )
        self.headers_too_large = refusal(
            431, "request_header_fields_too_large", f"request line and headers exceed {self.max_header_bytes} bytes"
        )


class ResponseWriter:
    """The transport a request's cycle writes through. uvicorn writes an answer's status line and
    headers, then its body, each with ``transport.write``: two ``send()`` calls and, over loopback,
    two packets (each with the kernel's work of delivering it) per answer. Writes made in one pass
    of the event loop go out as one: flushed when the response completes, when the connection is
    closed, or at the end of the pass (a ``100 Continue``, a streamed body)."""

    __slots__ = ("_loop", "_parts", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._parts:
            self._loop.call_soon(self.flush)
        self._parts.append(data)

    def flush(self) -> None:
        parts = self._parts
        if parts:
            self.transport.write(parts[0] if len(parts) == 1 else b"".join(parts))
            parts.clear()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class _AnswerPending:
    """``EdgeProtocol.cycle`` while fast answers are pending: uvicorn then queues an ASGI request."""

    response_complete = False


_ANSWER_PENDING = _AnswerPending()


class EdgeProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with header/body timeouts, a header size limit and a connection cap."""

    limits: ClassVar[EdgeLimits]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._phase = _IDLE
        self._request = 0  # the request the phase belongs to (the first one starts with the connection)
        self._timer: asyncio.TimerHandle | None = None
        self._timed = (_IDLE, 0)  # (phase, request) the timer runs for
        self._header_bytes = 0
        self._counted = False
        self._fast: FastRequest | None = None  # the message being parsed, when the fast path took it
        self.answers: deque[FastRequest] = deque()  # fast requests not yet answered, in request order
        self._close_when_answered = False

    # ---- connection ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writer = ResponseWriter(transport, self.loop)
        limits = self.limits
        if self.server is None or self.server[1] != limits.ops_port:
            if limits.webhook_connections >= limits.max_connections:
                self._refuse(limits.too_many_connections, "max_connections")
                return
            limits.webhook_connections += 1
            self._counted = True
        self._phase = _HEADERS
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        for request in list(self.answers):
            request.lost()
        if self._counted:
            self._counted = False
            self.limits.webhook_connections -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._phase == _HEADERS:
            # Bytes of this chunk when the headers are still incomplete after it (a chunk that also held
            # the end of a pipelined previous request over-counts by that part; nobody pipelines webhooks).
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(self.limits.headers_too_large, "max_header_bytes")
                return
        if (self._phase, self._request) != self._timed:
            self._arm()

    def _unsupported_upgrade_warning(self) -> None:
        # The server runs with ws="none" (a protocol switch would take the connection out of the count
        # above): an Upgrade request is plain HTTP here, not worth uvicorn's two warnings per request.
        log.debug("upgrade request ignored")

    # ---- parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != _HEADERS:  # a next request on a kept-alive connection: its own header time
            self._phase = _HEADERS
            self._request += 1
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        fast = self.limits.fast
        self._fast = fast.take(self) if fast is not None else None
        if self._fast is not None:
            return
        if self.answers:  # fast answers still to write: uvicorn queues this request behind them
            self.cycle = _ANSWER_PENDING  # type: ignore[assignment]
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = self._writer  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if self._fast is not None:
            self._fast.body(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        if self._fast is not None:
            request, self._fast = self._fast, None
            request.complete()
        else:
            super().on_message_complete()

    def flush_answers(self) -> None:
        """Write the fast answers that are ready, in request order (``ingest.http.fast``)."""
        answers = self.answers
        while answers and answers[0].answer is not None:
            request = answers.popleft()
            if self.transport.is_closing():
                continue
            self.transport.write(request.answer)  # type: ignore[arg-type]
            if not request.keep_alive or (self._close_when_answered and not answers):
                self.transport.close()
            self.on_response_complete()  # uvicorn's bookkeeping: keep-alive timer, the pipelined next request

    def shutdown(self) -> None:
        if self.answers:  # graceful stop: answer what was received, then close
            self._close_when_answered = True
            return
        super().shutdown()

    def on_response_complete(self) -> None:
        self._writer.flush()
        super().on_response_complete()

    # ---- timers --------------------------------------------------------------------------------
    def _arm(self) -> None:
        """Run the timer of the current phase (none when idle: uvicorn's keep-alive timeout applies)."""
        self._cancel()
        phase = self._phase
        self._timed = (phase, self._request)
        if phase == _HEADERS:
            self._timer = self.loop.call_later(self.limits.header_timeout_s, self._expire)
        elif phase == _BODY:
            self._timer = self.loop.call_later(self.limits.body_timeout_s, self._expire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        limit = "header_timeout_s" if self._phase == _HEADERS else "body_timeout_s"
        metrics.HTTP_LIMITED.labels(limit).inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("connection cut", extra={"limit": limit, "client": self.client and self.client[0]})
        # abort, not close: a client that does not send may not read either, and close() would wait
        # for the write buffer. The app sees http.disconnect through connection_lost.
        self.transport.abort()

    def _refuse(self, response: bytes, limit: str) -> None:
        metrics.HTTP_LIMITED.labels(limit).inc()
        self._cancel()
        self._phase = _IDLE
        self.transport.write(response)
        self.transport.close()


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """An ``EdgeProtocol`` class bound to ``limits`` (uvicorn instantiates the class it is given)."""

    class BoundEdgeProtocol(EdgeProtocol):
        pass

    BoundEdgeProtocol.limits = limits
    return BoundEdgeProtocol
