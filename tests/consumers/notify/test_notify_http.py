"""Notification delivery: HTTP POSTs signed the Standard Webhooks way to a real local server
(uvicorn + Starlette), checked with our verifier, the official ``standardwebhooks`` package and the
docs' example; retries, dead-lettering, and the outbox/dispatcher on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import MetaData
from standardwebhooks import Webhook

from consumers.alerts.settings import AlertsSettings
from consumers.notify.dispatcher import Dispatcher
from consumers.notify.model import Notification, notification_id
from consumers.notify.outbox import Outbox
from consumers.notify.settings import build_sinks
from consumers.notify.signing import (
    ID_HEADER,
    KIND_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SecretError,
    secret_key,
    sign,
    signed_headers,
    verify,
)
from consumers.notify.sinks import (
    DEAD_LETTERED,
    DELIVERED,
    DeliveryError,
    HttpSink,
    LogSink,
    NotifyConfigError,
)
from consumers.sqlstore import make_engine
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from tests.support.hook_server import NEXT_SECRET, SECRET, HookServer, assert_signed
from tests.support.paths import REPO as REPO_ROOT
from tests.support.postgres import db_url, postgres_url  # noqa: F401
from tests.support.processes import tpipe_env
from tests.support.waiting import wait_until

REPO = REPO_ROOT


@pytest.fixture
def hook() -> Iterator[HookServer]:
    with HookServer() as srv:
        yield srv


def make_notification(i: int = 1, vin: str | None = "VIN1") -> Notification:
    return Notification(notification_id("test", i), "alert", f"alert {i}", vin, 1_700_000_000_000 + i, {"i": i})


def test_signature_matches_the_standard_webhooks_example() -> None:
    # the example of the Standard Webhooks reference implementations (secret, id, timestamp, body)
    secret, msg_id, ts, body = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                1614265330, b'{"test": 2432232314}')
    assert sign(secret, msg_id, ts, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = signed_headers([secret], msg_id, body, now=ts)
    assert headers == {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(ts),
                       SIGNATURE_HEADER: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    assert verify(secret, headers, body, now=ts + 299)


def test_verify_refuses_tampering_old_or_future_timestamps_and_missing_headers() -> None:
    body, now = b'{"a":1}', 1_700_000_000
    h = signed_headers([SECRET], "n1", body, now=now)
    assert verify(SECRET, h, body, now=now)
    assert verify(SECRET, {k.upper(): v for k, v in h.items()}, body, now=now)  # header names in any case
    assert not verify(SECRET, h, body + b" ", now=now)  # tampered body
    assert not verify(SECRET, {**h, ID_HEADER: "n2"}, body, now=now)  # another id
    assert not verify(SECRET, {**h, TIMESTAMP_HEADER: str(now + 1)}, body, now=now)  # timestamp changed
    assert not verify(NEXT_SECRET, h, body, now=now)  # another secret
    assert not verify(SECRET, h, body, now=now + 301)  # too old: a replay
    assert not verify(SECRET, h, body, now=now - 301)  # from the future
    assert verify(SECRET, h, body, now=now + 3000, tolerance_s=3600)
    for missing in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        assert not verify(SECRET, {k: v for k, v in h.items() if k != missing}, body, now=now)
    assert not verify(SECRET, {**h, TIMESTAMP_HEADER: "soon"}, body, now=now)
    v2 = h[SIGNATURE_HEADER].replace("v1,", "v2,")
    assert not verify(SECRET, {**h, SIGNATURE_HEADER: v2}, body, now=now)  # only v1 counts
    assert not verify(SECRET, {**h, SIGNATURE_HEADER: "v1,not*base64"}, body, now=now)


def test_secrets_whsec_base64_or_raw() -> None:
    assert secret_key("whsec_" + base64.b64encode(b"\x00\x01key").decode()) == b"\x00\x01key"
    assert secret_key("whsec_" + base64.b64encode(b"k3y").decode().rstrip("=")) == b"k3y"  # padding optional
    assert secret_key("plain-passphrase") == b"plain-passphrase"  # not whsec_: its UTF-8 bytes
    assert secret_key(b"raw") == b"raw"
    for bad in ("whsec_not*base64!", "whsec_", ""):
        with pytest.raises(SecretError):
            secret_key(bad)
    # the official package takes a raw secret as bytes
    raw = "plain-passphrase"
    h = signed_headers([raw], "n1", b"{}")
    assert Webhook(raw.encode()).verify(b"{}", h) == {}


def test_rotation_signs_with_every_secret_and_each_verifies() -> None:
    body = b'{"x":1}'
    h = signed_headers([SECRET, NEXT_SECRET], "n1", body)
    sigs = h[SIGNATURE_HEADER].split(" ")
    assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs)
    assert sigs == [sign(SECRET, "n1", h[TIMESTAMP_HEADER], body), sign(NEXT_SECRET, "n1", h[TIMESTAMP_HEADER], body)]
    for secret in (SECRET, NEXT_SECRET):  # a receiver holding the old or the new secret accepts it
        assert verify(secret, h, body)
        Webhook(secret).verify(body, h)
    assert verify([NEXT_SECRET, "whsec_" + base64.b64encode(b"other").decode()], h, body)
    assert not verify("whsec_" + base64.b64encode(b"other").decode(), h, body)


def _docs_verifier() -> dict[str, object]:
    """The verifier example of docs/alerts-and-credits.md, run as it is written there."""
    text = (REPO / "docs" / "alerts-and-credits.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify_notification" in b]
    assert len(blocks) == 1, "the docs show one verifier example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "docs/alerts-and-credits.md", "exec"), namespace)
    return namespace


async def test_a_real_receiver_verifies_with_either_secret_the_package_and_the_docs_example(
    hook: HookServer,
) -> None:
    sink = HttpSink(hook.url, secrets=[SECRET, NEXT_SECRET], attempts=1)
    n = make_notification(7)
    try:
        assert await sink.deliver(n) == DELIVERED
    finally:
        await sink.stop()
    (r,) = hook.all()
    assert r.headers[ID_HEADER] == n.notification_id and r.headers[KIND_HEADER.lower()] == "alert"
    assert not any(k.startswith("x-tpipe-") and k != KIND_HEADER.lower() for k in r.headers)  # no old headers
    assert len(r.headers[SIGNATURE_HEADER].split(" ")) == 2
    for secret in (SECRET, NEXT_SECRET):
        assert_signed(r, secret)
    docs_verify = _docs_verifier()["verify_notification"]
    assert callable(docs_verify)
    assert docs_verify(NEXT_SECRET, r.headers, r.body) is True
    assert docs_verify(SECRET, r.headers, r.body + b"x") is False
    assert docs_verify(SECRET, {**r.headers, TIMESTAMP_HEADER: str(int(time.time()) - 600)}, r.body) is False


async def test_unsigned_only_when_asked_for(hook: HookServer) -> None:
    with pytest.raises(NotifyConfigError, match="secret"):
        HttpSink(hook.url)
    with pytest.raises(NotifyConfigError, match="base64"):
        HttpSink(hook.url, secrets=["whsec_***"])
    sink = HttpSink(hook.url, unsigned=True, attempts=1)
    try:
        assert await sink.deliver(make_notification()) == DELIVERED
    finally:
        await sink.stop()
    (r,) = hook.all()
    assert SIGNATURE_HEADER not in r.headers
    assert r.headers[ID_HEADER] == make_notification().notification_id and r.headers[TIMESTAMP_HEADER].isdigit()


def test_settings_take_several_secrets_from_repeated_flags_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("TPIPE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TPIPE_NOTIFY_HTTP_SECRET", f"{SECRET}, {NEXT_SECRET}")  # comma-separated
    assert AlertsSettings().http_secrets() == [SECRET, NEXT_SECRET]
    monkeypatch.setenv("TPIPE_NOTIFY_HTTP_SECRET", orjson.dumps([NEXT_SECRET]).decode())  # a JSON list
    assert AlertsSettings().http_secrets() == [NEXT_SECRET]
    monkeypatch.setenv("TPIPE_NOTIFY_HTTP_SECRET", SECRET)  # one, as before
    assert AlertsSettings().http_secrets() == [SECRET]
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, AlertsSettings)
    args = parser.parse_args(["--notify-http-url", "http://h/x", "--notify-http-secret", NEXT_SECRET,
                              "--notify-http-secret", SECRET])
    s = settings_from_args(AlertsSettings, args)  # the flags win over the environment
    assert s.http_secrets() == [NEXT_SECRET, SECRET]
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    s.check_notify()
    monkeypatch.delenv("TPIPE_NOTIFY_HTTP_SECRET")
    unsigned = settings_from_args(AlertsSettings, parser.parse_args(["--notify-http-url", "http://h/x",
                                                                     "--notify-unsigned"]))
    assert unsigned.http_secrets() == [] and unsigned.notify_unsigned
    unsigned.check_notify()  # allowed: asked for
    with pytest.raises(NotifyConfigError, match="--notify-unsigned"):
        settings_from_args(AlertsSettings, parser.parse_args(["--notify-http-url", "http://h/x"])).check_notify()


async def test_sinks_built_from_settings_sign_with_every_secret(hook: HookServer) -> None:
    s = AlertsSettings(notify_http_url=hook.url, notify_http_secret=f"{SECRET},{NEXT_SECRET}", notify_kafka=False,
                       notify_log=False, notify_http_attempts=1)
    (sink,) = build_sinks(s, producer=None, notifications_topic="t.notifications", dlq_topic="t.dlq", worker="t")
    try:
        assert await sink.deliver(make_notification()) == DELIVERED
    finally:
        await sink.stop()
    (r,) = hook.all()
    assert len(r.headers[SIGNATURE_HEADER].split(" ")) == 2
    assert_signed(r, SECRET)
    assert_signed(r, NEXT_SECRET)
    with pytest.raises(NotifyConfigError):
        build_sinks(AlertsSettings(notify_http_url=hook.url, notify_kafka=False), producer=None,
                    notifications_topic="t.notifications", dlq_topic="t.dlq", worker="t")


@pytest.mark.parametrize("worker", ["alerts", "credits"])
def test_the_worker_cli_refuses_an_http_sink_without_a_secret(tmp_path: Path, worker: str) -> None:
    env = tpipe_env()
    db = tmp_path / f"{worker}.db"
    base = [sys.executable, "-m", "tpipe.cli", "consume", worker, "--kafka", "127.0.0.1:9", "--db-url",
            f"sqlite:///{db}", "--notify-http-url", "http://127.0.0.1:9/hook"]
    res = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    (line,) = res.stderr.strip().splitlines()  # one clear line, no traceback
    assert line.startswith(f"tpipe consume {worker}: error: --notify-http-url is set but no --notify-http-secret")
    assert "--notify-unsigned" in line
    assert not db.exists(), "refused before touching anything"

    bad = "whsec_no+t*base64"
    res = subprocess.run([*base, "--notify-http-secret", bad], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=60, check=False)
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert "--notify-http-secret: a secret starting with whsec_ must be base64" in line and bad not in line


async def test_http_sink_retries_until_the_server_recovers(hook: HookServer) -> None:
    hook.fail_first = 2
    sink = HttpSink(hook.url, secrets=[SECRET], attempts=5, backoff_s=0.01)
    n = make_notification()
    try:
        assert await sink.deliver(n) == DELIVERED
    finally:
        await sink.stop()
    reqs = hook.all()
    assert [r.status for r in reqs] == [500, 500, 200]
    for r in reqs:
        assert_signed(r)
        assert r.headers[ID_HEADER] == n.notification_id  # webhook-id: the same on every attempt
        assert orjson.loads(r.body) == n.to_dict()


async def test_http_sink_dead_letters_after_the_last_attempt(hook: HookServer) -> None:
    hook.status = 503
    dead: list[tuple[str, str, str]] = []

    async def dead_letter(n: Notification, sink: str, reason: str) -> None:
        dead.append((n.notification_id, sink, reason))

    sink = HttpSink(hook.url, secrets=[SECRET], attempts=3, backoff_s=0.01, dead_letter=dead_letter)
    n = make_notification()
    try:
        assert await sink.deliver(n) == DEAD_LETTERED
    finally:
        await sink.stop()
    assert len(hook.all()) == 3
    assert dead == [(n.notification_id, "http", "HTTP 503")]


async def test_http_sink_client_error_is_not_retried(hook: HookServer) -> None:
    hook.status = 400
    sink = HttpSink(hook.url, secrets=[SECRET], attempts=5, backoff_s=0.01)  # no dead letter: DeliveryError
    try:
        with pytest.raises(DeliveryError):
            await sink.deliver(make_notification())
    finally:
        await sink.stop()
    assert len(hook.all()) == 1


async def test_http_sink_retries_connection_errors() -> None:
    srv = HookServer()  # port reserved, nothing listening yet
    sink = HttpSink(srv.url, secrets=[SECRET], attempts=2, backoff_s=0.01)
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
    http = HttpSink(hook.url, secrets=[SECRET], attempts=3, backoff_s=0.01)
    d = Dispatcher(engine, outbox, [LogSink(), http], worker="test", poll_interval_s=0.05)
    try:
        assert await d.drain_once() == 2
        assert await d.drain_once() == 0
        # Background loop: a notification enqueued later is delivered after wake().
        await d.start()
        with engine.begin() as conn:
            outbox.enqueue(conn, make_notification(3))
        d.wake()
        await wait_until(lambda: len(hook.accepted()) >= 3, "the later notification delivered", timeout=10,
                         interval=0.05)
    finally:
        await d.stop()
        engine.dispose()
    ids = [r.headers[ID_HEADER] for r in hook.accepted()]
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
