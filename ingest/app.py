"""The webhook receiver: a Starlette app whose request path is auth → parse → spool → 202.

``create_app(settings)`` builds it; the lifespan opens (and recovers) the spool, starts the group
commit loop and the forwarder, and on shutdown drains the spool to Kafka within the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ingest.direct import DirectPublisher
from ingest.errors import SpoolFullError, SpoolWriteError
from ingest.forward.placement import ForwarderPlacement, make_forwarder
from ingest.http.limits import InflightGate, PortSplit
from ingest.ops_routes import OpsRoutes
from ingest.records import RecordBuilder
from ingest.settings import IngestSettings
from ingest.spool import frame
from ingest.spool.log import Spool
from ingest.tokens import TokenStore
from plumbing import metrics
from plumbing.logs import register_secret
from schemas.body import check_body
from schemas.errors import BodyTooLargeError
from schemas.parse import BodyError, parse_body

log = logging.getLogger("tpipe.ingest")

_JSON = "application/json"


Outcome = tuple[int, bytes, list[tuple[str, str]]]  # status, JSON body, extra headers

# The spool-mode answer: the body is on disk; its events get their ids and topics in the forwarder.
_SPOOLED = b'{"status":"accepted","durability":"spool"}'
_SPOOLED_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_SPOOLED)).encode())]


def _token_of(authorization: bytes | None, query_string: bytes) -> str | None:
    """The webhook token: ``Authorization: Bearer <token>``, else ``?token=<token>``."""
    if authorization:
        scheme, _, credential = authorization.partition(b" ")
        return credential.strip().decode("latin-1") if scheme.lower() == b"bearer" else None
    if query_string:
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if key == "token":
                return value
    return None


class Receiver:
    """State shared by the routes: tokens, spool, forwarder, producer."""

    def __init__(self, settings: IngestSettings, tokens: TokenStore | None = None) -> None:
        self.settings = settings
        for t in settings.token:
            register_secret(t.get_secret_value())
        if settings.kafka_sasl_password is not None:
            register_secret(settings.kafka_sasl_password.get_secret_value())
        self.tokens = tokens or TokenStore([t.get_secret_value() for t in settings.token], settings.tokens_file)
        validator = None
        if settings.validate_events:
            from schemas.validate import compile_all, validate_event

            compile_all()  # compile every schema now, not on the first requests
            validator = validate_event
        self.limits = settings.body_limits()
        self.builder = RecordBuilder(settings.topic_prefix, validator, self.limits)
        self.spool: Spool | None = None
        self.forwarder: ForwarderPlacement | None = None
        self.direct: DirectPublisher | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.accepting = False
        self._http_202 = metrics.HTTP_REQUESTS.labels("202")

    # ---- lifecycle -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        s = self.settings
        if self.tokens.count == 0:
            raise RuntimeError("no webhook token configured: pass --token or create one with `tpipe token new`")
        loop = asyncio.get_running_loop()
        if s.durability == "spool":
            self.spool = Spool(
                s.spool_dir,
                max_bytes=s.spool_max_bytes,
                segment_bytes=s.spool_segment_bytes,
                commit_delay_s=s.spool_commit_delay_ms / 1000,
                gather_s=s.spool_gather_ms / 1000,
            )
            rep = self.spool.open()
            log.info(
                "spool recovered",
                extra={"pending_events": rep.pending_events, "damaged_bytes": rep.damaged_bytes,
                       "damaged_ranges": len(rep.damaged), "spool_dir": str(s.spool_dir)},
            )
            metrics.SPOOL_CORRUPT_BYTES.inc(rep.damaged_bytes)
            self.spool.start()
            self.forwarder = make_forwarder(s, self.spool, self.builder)
            self._tasks.append(loop.create_task(self.forwarder.run(), name="forwarder"))
        else:
            self.direct = DirectPublisher(s, self.builder)
            await self.direct.start()
        if s.tokens_watch_interval_s > 0:
            self._tasks.append(loop.create_task(self._watch_tokens(s.tokens_watch_interval_s), name="tokens-watch"))
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_tokens)
        # Startup objects (modules, schemas, clients) never become garbage: move them out of the cyclic
        # GC's view so full collections stay short on the request path (measured: 30-70 ms -> a few ms).
        gc.collect()
        gc.freeze()
        self.accepting = True
        log.info("receiver ready", extra={"durability": s.durability, "tokens": self.tokens.count})
        try:
            yield
        finally:
            self.accepting = False
            await self._shutdown()

    async def _shutdown(self) -> None:
        s = self.settings
        if self.forwarder is not None and self.spool is not None:
            drained = await self.forwarder.drain(s.drain_timeout_s)
            left = self.spool.stats().pending_events
            log.info("shutdown: spool drain", extra={"drained": drained, "left_in_spool": left})
            await self.forwarder.close()
            await self.spool.close()
        if self.direct is not None:
            try:  # batches the broker never took would make stop() wait forever
                await self.direct.close()
            except TimeoutError:
                log.warning("kafka producer did not stop in time; unacknowledged requests got 503")
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def _reload_tokens(self) -> None:
        try:
            if self.tokens.reload():
                log.info("tokens reloaded", extra={"active_tokens": self.tokens.count})
        except Exception as exc:  # keep the old set on a bad file
            log.error("tokens file rejected, keeping the previous tokens", extra={"error": str(exc)})

    async def _watch_tokens(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if self.tokens.reload_if_changed():
                    log.info("tokens reloaded", extra={"active_tokens": self.tokens.count})
            except Exception as exc:
                log.error("tokens file rejected, keeping the previous tokens", extra={"error": str(exc)})

    # ---- routes --------------------------------------------------------------------------------
    async def asgi_webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body, extra = await self.handle(scope, receive)
        except Exception as exc:  # never an uncounted 500: say what broke, count it, answer JSON
            status, body, extra = self.failed(exc)
        if body is _SPOOLED:  # the common answer: headers built once
            await send({"type": "http.response.start", "status": 202, "headers": _SPOOLED_HEADERS})
            await send({"type": "http.response.body", "body": body})
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        for name, value in extra:
            headers.append((name.lower().encode(), value.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _refuse_body(self, exc: BodyError) -> Outcome:
        """400 for a body that is not an event document (or nests too deep), 413 for too many events."""
        if isinstance(exc, BodyTooLargeError):
            metrics.BODIES_REFUSED.labels("too_many_events").inc()
            return self._refuse(413, "payload_too_large", exc.reason)
        metrics.BODIES_REFUSED.labels("too_deep" if exc.reason.startswith("nesting deeper") else "invalid").inc()
        return self._refuse(400, "bad_request", exc.reason)

    def failed(self, exc: Exception) -> Outcome:
        """A bug of ours on the request path: logged, counted, answered 500 (nothing was stored)."""
        log.error("webhook request failed", exc_info=exc, extra={"error": f"{type(exc).__name__}: {exc}"})
        metrics.BODIES_REFUSED.labels("internal_error").inc()
        return self._refuse(500, "internal_error", "the receiver failed; the body was not stored")

    def _refuse(self, status: int, error: str, reason: str, retry: bool = False) -> Outcome:
        metrics.HTTP_REQUESTS.labels(str(status)).inc()
        extra = [("Retry-After", str(self.settings.retry_after_s))] if retry else []
        return status, orjson.dumps({"error": error, "reason": reason}), extra

    def admit(self, headers: list[tuple[bytes, bytes]], query_string: bytes) -> Outcome | None:
        """Before the body: the token and the declared size; a refusal, or None to read the body."""
        auth = declared = None
        for name, value in headers:
            if name == b"authorization":
                auth = value
            elif name == b"content-length":
                declared = value
        if not self.tokens.check(_token_of(auth, query_string)):
            metrics.BODIES_REFUSED.labels("unauthorized").inc()
            return self._refuse(401, "unauthorized", "missing or invalid token (Bearer header or ?token=)")
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return self.too_large()
        return None

    @property
    def max_body_bytes(self) -> int:
        return self.settings.max_body_bytes

    def disconnected(self) -> Outcome:
        return self._refuse(400, "bad_request", "client disconnected before the body was complete")

    def too_large(self) -> Outcome:
        metrics.BODIES_REFUSED.labels("too_large").inc()
        return self._refuse(413, "payload_too_large", f"body exceeds {self.settings.max_body_bytes} bytes")

    async def handle(self, scope: Scope, receive: Receive) -> Outcome:
        """One webhook delivery: auth, body limit, parse, validate, spool (or Kafka), answer."""
        s = self.settings
        refused = self.admit(scope["headers"], scope.get("query_string", b""))
        if refused is not None:
            return refused
        limit = s.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return self.disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return self.too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        received_at_ms = time.time_ns() // 1_000_000
        if s.durability == "spool":
            return await self._spool_body(body, received_at_ms, scope)
        return await self._publish_body(body, received_at_ms, scope)

    async def _spool_body(self, body: bytes, received_at_ms: int, scope: Scope) -> Outcome:
        """Spool mode: check the body is an event document, store it as received, answer 202."""
        stored = self.spool_nowait(body, received_at_ms)
        if isinstance(stored, tuple):
            return stored
        with contextlib.suppress(SpoolWriteError):
            await stored
        return self.spooled(stored, len(body), received_at_ms, scope["path"], scope.get("query_string", b""))

    def spool_nowait(self, body: bytes, received_at_ms: int) -> Outcome | asyncio.Future[None]:
        """Spool mode, up to the fdatasync: a refusal, or the future of the body's group commit
        (``spooled`` turns it into the answer). Shared by the ASGI path and ``ingest.http.fast``."""
        try:
            check_body(body, self.limits)
        except BodyError as exc:
            return self._refuse_body(exc)
        assert self.spool is not None
        try:
            return self.spool.append_nowait(frame.encode(body, received_at_ms))
        except SpoolFullError as exc:
            metrics.SPOOL_REJECTED.labels("full").inc()
            return self._refuse(503, "spool_full", str(exc), retry=True)
        except SpoolWriteError as exc:
            return self._write_failed(exc)

    def spooled(self, stored: asyncio.Future[None], size: int, received_at_ms: int, path: str,
                query_string: bytes) -> Outcome:
        """The answer once the group commit holding the body is done: 202, or 503 if the write failed."""
        exc = stored.exception()
        if exc is not None:
            if isinstance(exc, SpoolWriteError):
                return self._write_failed(exc)
            raise exc
        if self.settings.log_requests:
            log.info("accepted", extra={"path": path, "query": query_string.decode("latin-1"), "bytes": size,
                                        "received_at_ms": received_at_ms})
        self._http_202.inc()
        return 202, _SPOOLED, []

    def _write_failed(self, exc: SpoolWriteError) -> Outcome:
        metrics.SPOOL_REJECTED.labels("write_error").inc()
        return self._refuse(503, "spool_unavailable", str(exc), retry=True)

    async def _publish_body(self, body: bytes, received_at_ms: int, scope: Scope) -> Outcome:
        """Broker mode: parse, build and publish on the request path; 202 after Kafka's ack."""
        try:
            envelopes = parse_body(body, received_at_ms=received_at_ms, limits=self.limits)
        except BodyError as exc:
            return self._refuse_body(exc)
        assert self.direct is not None
        records, accepted = self.direct.records(envelopes)
        try:
            await self.direct.publish(records)
        except Exception as exc:
            return self._refuse(503, "kafka_unavailable", f"{type(exc).__name__}: {exc}", retry=True)
        if self.settings.log_requests:
            log.info(
                "accepted",
                extra={"path": scope["path"], "query": scope.get("query_string", b"").decode("latin-1"),
                       "event_ids": [a["event_id"] for a in accepted]},
            )
        self._http_202.inc()
        return 202, orjson.dumps({"status": "accepted", "durability": "broker", "accepted": len(accepted),
                                  "events": accepted}), []

class ReceiverApp(Starlette):
    """Starlette, with ``POST /webhook`` answered straight from ASGI: the hot path skips the
    middleware stack, routing and Request/Response objects; every other path is plain Starlette.
    Before either: a path asked on the wrong port is 404, and webhook requests beyond
    ``--max-concurrent-requests`` get 503 (``ingest.http.limits``)."""

    receiver: Receiver
    ports: PortSplit
    gate: InflightGate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.ports.misrouted(scope):
                await self.ports.not_found(scope, receive, send)
                return
            if scope["path"] == "/webhook" and scope["method"] == "POST":
                await self.gate.run(self.receiver.asgi_webhook, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _AsgiEndpoint:
    """An ASGI callable as a route endpoint (Starlette would wrap a bound method as a request handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def create_app(settings: IngestSettings, *, tokens: TokenStore | None = None) -> Starlette:
    receiver = Receiver(settings, tokens)
    ops = OpsRoutes(receiver)
    app = ReceiverApp(
        routes=[
            # POST /webhook is answered by ReceiverApp before routing; the route answers other methods (405)
            Route("/webhook", _AsgiEndpoint(receiver.asgi_webhook), methods=["POST"]),
            Route("/healthz", ops.healthz, methods=["GET"]),
            Route("/readyz", ops.readyz, methods=["GET"]),
            Route("/metrics", ops.metrics, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
    )
    app.state.receiver = receiver
    app.receiver = receiver
    app.ports = PortSplit(settings.ops_port)
    app.gate = InflightGate(settings.max_concurrent_requests, settings.retry_after_s)
    return app
