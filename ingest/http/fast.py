"""``POST /webhook`` answered in the HTTP protocol itself, without an ASGI request cycle (spool mode).

uvicorn gives every request a scope dict, a ``RequestResponseCycle`` with its ``asyncio.Event``, a task,
``receive``/``send`` message dicts with a regex check of every response header, and a keep-alive timer;
measured with callgrind on a raw ASGI no-op, that is ≈97,000 of its ≈127,500 instructions per request
(a protocol-level answer: ≈30,600). The webhook's request path is small next to it, so
``EdgeProtocol`` hands ``POST /webhook`` to ``FastRequest``: the body is collected from the parser's
callbacks, and the receiver's own steps (``Receiver.admit``, ``spool_nowait``, ``spooled``: the same
code, limits, metrics and answers as the ASGI path) run from the parser callback and the group
commit's future, with no task. Everything else — the ops paths, other methods, ``Expect:
100-continue``, upgrades, a request pipelined behind an ASGI answer, ``--durability broker``, ``--no-fast-webhook`` —
goes through the ASGI app as before.

Answers leave in request order: a connection keeps its fast requests in ``EdgeProtocol._answers``; an
ASGI request pipelined behind them waits in uvicorn's own pipeline until they are written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ingest.http.limits import InflightGate
    from ingest.http.protocol import EdgeProtocol

Outcome = tuple[int, bytes, list[tuple[str, str]]]  # status, JSON body, extra headers (ingest.app)


class WebhookTarget(Protocol):
    """What the fast path needs of the receiver (``ingest.app.Receiver``)."""

    def admit(self, headers: list[tuple[bytes, bytes]], query_string: bytes) -> Outcome | None: ...

    def too_large(self) -> Outcome: ...

    def disconnected(self) -> Outcome: ...

    def spool_nowait(self, body: bytes, received_at_ms: int) -> Outcome | asyncio.Future[None]: ...

    def spooled(self, stored: asyncio.Future[None], size: int, received_at_ms: int, path: str,
                query_string: bytes) -> Outcome: ...

    def failed(self, exc: Exception) -> Outcome: ...

    @property
    def max_body_bytes(self) -> int: ...


_STATUS = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_JSON = b"content-type: application/json\r\ncontent-length: "


def response_bytes(outcome: Outcome, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """The whole HTTP/1.1 answer, headers as the ASGI path sends them (uvicorn's defaults first)."""
    status, body, extra = outcome
    parts = [_STATUS[status]]
    for name, value in default_headers:
        parts += [name, b": ", value, b"\r\n"]
    parts += [_JSON, str(len(body)).encode(), b"\r\n"]
    for header, text in extra:
        parts += [header.lower().encode(), b": ", text.encode(), b"\r\n"]
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += [b"\r\n", body]
    return b"".join(parts)


class FastWebhook:
    """Per server: the receiver, its in-flight gate and the ops port (the webhook is not served there)."""

    def __init__(self, target: WebhookTarget, gate: InflightGate, ops_port: int | None) -> None:
        self.target = target
        self.gate = gate
        self.ops_port = ops_port

    def take(self, proto: EdgeProtocol) -> FastRequest | None:
        """A ``FastRequest`` for this request if it is a plain ``POST /webhook``, else None (ASGI)."""
        parser = proto.parser
        url = proto.url
        if parser.get_method() != b"POST" or not (url == b"/webhook" or url.startswith(b"/webhook?")):
            return None
        if proto.expect_100_continue or parser.should_upgrade():
            return None
        if self.ops_port is not None and proto.server is not None and proto.server[1] == self.ops_port:
            return None  # the webhook is not served on the ops port: the ASGI app answers 404
        cycle = proto.cycle
        if cycle is not None and not cycle.response_complete:
            return None  # pipelined behind an ASGI answer: uvicorn keeps the order
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return FastRequest(self, proto, url.partition(b"?")[2], keep_alive)


class FastRequest:
    """One ``POST /webhook``: admitted at its headers, its body collected, spooled at its end, answered
    once the group commit holding it is done (or refused at any step, as the ASGI path would)."""

    __slots__ = ("_chunks", "_counted", "_fast", "_proto", "_query", "_received_at_ms", "_size", "answer",
                 "keep_alive")

    def __init__(self, fast: FastWebhook, proto: EdgeProtocol, query: bytes, keep_alive: bool) -> None:
        self._fast, self._proto, self._query, self.keep_alive = fast, proto, query, keep_alive
        self._chunks: list[bytes] | None = []
        self._size = 0
        self._received_at_ms = 0
        self._counted = False
        self.answer: bytes | None = None
        proto.answers.append(self)
        gate = fast.gate
        if gate.inflight >= gate.limit:
            self._finish(gate.refused())
            return
        refused = self._call(fast.target.admit, proto.headers, query)
        if refused is not None:
            self._finish(refused)
            return
        gate.inflight += 1
        self._counted = True

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # never an uncounted 500 (as the ASGI path)
            return self._fast.target.failed(exc)

    # ---- parser callbacks ----------------------------------------------------------------------
    def body(self, chunk: bytes) -> None:
        chunks = self._chunks
        if chunks is None or self.answer is not None:
            return  # refused already: the rest of the body is read and dropped
        self._size += len(chunk)
        if self._size > self._fast.target.max_body_bytes:
            self._finish(self._fast.target.too_large())
            return
        chunks.append(chunk)

    def complete(self) -> None:
        chunks = self._chunks
        if chunks is None or self.answer is not None:
            return
        self._chunks = None
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._received_at_ms = time.time_ns() // 1_000_000
        stored = self._call(self._fast.target.spool_nowait, body, self._received_at_ms)
        if isinstance(stored, tuple):
            self._finish(stored)
        else:
            self._size = len(body)
            stored.add_done_callback(self._committed)

    def lost(self) -> None:
        """The connection closed before the body was complete (a client gone, the body timeout)."""
        if self._chunks is not None and self.answer is None:
            self._chunks = None
            self._finish(self._fast.target.disconnected())

    # ---- the answer ----------------------------------------------------------------------------
    def _committed(self, stored: asyncio.Future[None]) -> None:
        if stored.cancelled():
            self._finish(self._fast.target.failed(RuntimeError("the spool commit was cancelled")))
            return
        self._finish(self._call(self._fast.target.spooled, stored, self._size, self._received_at_ms, "/webhook",
                                self._query))

    def _finish(self, outcome: Outcome) -> None:
        self._chunks = None
        if self._counted:
            self._counted = False
            self._fast.gate.inflight -= 1
        self.answer = response_bytes(outcome, self._proto.server_state.default_headers, self.keep_alive)
        self._proto.flush_answers()
