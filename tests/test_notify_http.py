"""Notification delivery: signed HTTP POSTs to a real local server (uvicorn + Starlette), retries,
dead-lettering, and the outbox/dispatcher on SQLite and PostgreSQL.

``HookServer`` is reused by the worker tests (``from tests.test_notify_http import HookServer``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest
import uvicorn
from sqlalchemy import MetaData
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consumers.notify.dispatcher import Dispatcher
from consumers.notify.model import Notification, notification_id
from consumers.notify.outbox import Outbox
from consumers.notify.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from consumers.notify.sinks import DEAD_LETTERED, DELIVERED, DeliveryError, HttpSink, LogSink
from consumers.sqlstore import make_engine
from tests.postgres_fixture import db_url, postgres_url  # noqa: F401

SECRET = "s3cret-hook-key"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    query: str = ""


@dataclass
class HookServer:
    """A real HTTP receiver on 127.0.0.1:<free port>; answers 500 to the first ``fail_first``
    requests (or ``status`` to all), records every request."""

    fail_first: int = 0
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            with self._lock:
                n = len(self.requests)
                status = 500 if n < self.fail_first else self.status
                self.requests.append(Received(dict(request.headers), body, status, request.url.query))
            return JSONResponse({"n": n}, status_code=status)

        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> HookServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test HTTP server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.requests)


@pytest.fixture
def hook() -> Iterator[HookServer]:
    srv = HookServer().start()
    try:
        yield srv
    finally:
        srv.stop()


def assert_signed(r: Received, secret: str = SECRET) -> None:
    assert r.headers["content-type"] == "application/json"
    ts, sig = r.headers[TIMESTAMP_HEADER.lower()], r.headers[SIGNATURE_HEADER.lower()]
    assert sig == "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + r.body, hashlib.sha256).hexdigest()
    assert verify(secret, ts, sig, r.body)


def make_notification(i: int = 1, vin: str | None = "VIN1") -> Notification:
    return Notification(notification_id("test", i), "alert", f"alert {i}", vin, 1_700_000_000_000 + i, {"i": i})


def test_signature_helpers() -> None:
    body = b'{"a":1}'
    sig = sign(SECRET, 1700000000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(SECRET, "1700000000", sig, body, now=1700000100)
    assert not verify(SECRET, "1700000000", sig, body + b" ", now=1700000100)
    assert not verify("other", "1700000000", sig, body, now=1700000100)
    assert not verify(SECRET, "1700000000", sig, body, now=1700009999)  # too old
    assert not verify(SECRET, "soon", sig, body)


async def test_http_sink_retries_until_the_server_recovers(hook: HookServer) -> None:
    hook.fail_first = 2
    sink = HttpSink(hook.url, secret=SECRET, attempts=5, backoff_s=0.01)
    n = make_notification()
    try:
        assert await sink.deliver(n) == DELIVERED
    finally:
        await sink.stop()
    reqs = hook.all()
    assert [r.status for r in reqs] == [500, 500, 200]
    for r in reqs:
        assert_signed(r)
        assert r.headers[ID_HEADER.lower()] == n.notification_id
        assert orjson.loads(r.body) == n.to_dict()


async def test_http_sink_dead_letters_after_the_last_attempt(hook: HookServer) -> None:
    hook.status = 503
    dead: list[tuple[str, str, str]] = []

    async def dead_letter(n: Notification, sink: str, reason: str) -> None:
        dead.append((n.notification_id, sink, reason))

    sink = HttpSink(hook.url, secret=SECRET, attempts=3, backoff_s=0.01, dead_letter=dead_letter)
    n = make_notification()
    try:
        assert await sink.deliver(n) == DEAD_LETTERED
    finally:
        await sink.stop()
    assert len(hook.all()) == 3
    assert dead == [(n.notification_id, "http", "HTTP 503")]


async def test_http_sink_client_error_is_not_retried(hook: HookServer) -> None:
    hook.status = 400
    sink = HttpSink(hook.url, secret=SECRET, attempts=5, backoff_s=0.01)  # no dead letter: DeliveryError
    try:
        with pytest.raises(DeliveryError):
            await sink.deliver(make_notification())
    finally:
        await sink.stop()
    assert len(hook.all()) == 1


async def test_http_sink_retries_connection_errors() -> None:
    srv = HookServer()  # port reserved, nothing listening yet
    sink = HttpSink(srv.url, secret=SECRET, attempts=2, backoff_s=0.01)
    try:
        with pytest.raises(DeliveryError, match="ConnectError"):
            await sink.deliver(make_notification())
    finally:
        await sink.stop()


async def test_outbox_dispatcher_delivers_each_once(db_url: str, hook: HookServer) -> None:  # noqa: F811
    hook.fail_first = 1
    md = MetaData()
    outbox = Outbox(md)
    engine = make_engine(db_url, md)
    with engine.begin() as conn:
        assert outbox.enqueue(conn, make_notification(1))
        assert outbox.enqueue(conn, make_notification(2, vin=None))
        assert not outbox.enqueue(conn, make_notification(1))  # same id: ignored
    http = HttpSink(hook.url, secret=SECRET, attempts=3, backoff_s=0.01)
    d = Dispatcher(engine, outbox, [LogSink(), http], worker="test", poll_interval_s=0.05)
    try:
        assert await d.drain_once() == 2
        assert await d.drain_once() == 0
        # Background loop: a notification enqueued later is delivered after wake().
        await d.start()
        with engine.begin() as conn:
            outbox.enqueue(conn, make_notification(3))
        d.wake()
        deadline = time.monotonic() + 10
        while len(hook.accepted()) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await d.stop()
        engine.dispose()
    ids = [r.headers[ID_HEADER.lower()] for r in hook.accepted()]
    assert sorted(ids) == sorted(notification_id("test", i) for i in (1, 2, 3))
    rows = outbox.all_rows(make_engine(db_url))
    assert all(r["done_at_ms"] is not None for r in rows)
    assert all(r["deliveries"] == {"log": "delivered", "http": "delivered"} for r in rows)


async def test_a_failing_sink_keeps_the_notification_pending(db_url: str) -> None:  # noqa: F811
    md = MetaData()
    outbox = Outbox(md)
    engine = make_engine(db_url, md)
    with engine.begin() as conn:
        outbox.enqueue(conn, make_notification(1))

    class Flaky:
        name = "kafka"
        calls = 0

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def deliver(self, n: Notification) -> str:
            self.calls += 1
            if self.calls == 1:
                raise DeliveryError("broker down")
            return DELIVERED

    log_sink, flaky = LogSink(), Flaky()
    calls: list[str] = []
    orig = log_sink.deliver

    async def counting(n: Notification) -> str:
        calls.append(n.notification_id)
        return await orig(n)

    log_sink.deliver = counting  # type: ignore[method-assign]
    d = Dispatcher(engine, outbox, [log_sink, flaky], worker="test")
    try:
        assert await d.drain_once() == 0
        (row,) = outbox.all_rows(engine)
        assert row["done_at_ms"] is None and row["attempts"] == 1 and row["deliveries"] == {"log": "delivered"}
        assert await d.drain_once() == 1
    finally:
        engine.dispose()
    assert len(calls) == 1  # the log sink, which had it, was not asked again
    assert flaky.calls == 2
