"""Where notifications go: an HTTP endpoint, a Kafka topic, the log.

Every sink has a ``name`` and ``async deliver(n) -> status``: ``"delivered"``, or
``"dead_lettered"`` when the sink gave up for good and wrote the notification to the dead-letter
topic instead. Raising ``DeliveryError`` means "not now": the dispatcher keeps the notification
pending and tries that sink again later.

Errors::

    NotifyError
     ├── DeliveryError      the sink could not take it now (retry later)
     └── NotifyConfigError  the sink cannot be set up as configured (e.g. HTTP without a secret)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import httpx

from consumers.errors import DeliveryError, NotifyConfigError, NotifyError
from consumers.notify.model import Notification
from consumers.notify.signing import KIND_HEADER, SecretError, secret_key, signed_headers
from plumbing.retry import Backoff
from schemas.times import now_ms

__all__ = [
    "DeadLetterWriter",
    "DeliveryError",
    "HttpSink",
    "KafkaSink",
    "LogSink",
    "NotifyConfigError",
    "NotifyError",
    "Sink",
]

log = logging.getLogger("consumers.notify")

DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"








class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, n: Notification) -> str: ...


DeadLetter = Callable[[Notification, str, str], Awaitable[None]]
"""``await dead_letter(notification, sink_name, reason)``."""


class DeadLetterWriter:
    """Writes undeliverable notifications to the dead-letter topic ``<prefix>.dlq``.

    Same convention as the runtime's dead letters (``consumers.runtime.dlq``): the value is the
    bytes that could not be delivered (the notification JSON, as the HTTP body), the reason is in
    ``dlq_*`` headers: ``dlq_error``, ``dlq_error_type`` (``NotificationUndeliverable``),
    ``dlq_worker``, ``dlq_sink``, ``dlq_at_ms``, plus ``notification_id``; key = the notification id.
    """

    def __init__(self, producer: Any, topic: str, *, worker: str) -> None:
        self._producer = producer
        self._topic = topic
        self._worker = worker

    async def __call__(self, n: Notification, sink: str, reason: str) -> None:
        headers = [
            ("notification_id", n.notification_id.encode()),
            ("dlq_error", reason[:2000].encode()),
            ("dlq_error_type", b"NotificationUndeliverable"),
            ("dlq_worker", self._worker.encode()),
            ("dlq_sink", sink.encode()),
            ("dlq_at_ms", str(now_ms()).encode()),
        ]
        try:
            await self._producer.send_and_wait(
                self._topic, value=n.to_json(), key=n.notification_id.encode(), headers=headers
            )
        except Exception as exc:  # any Kafka failure means "try again later"
            raise DeliveryError(f"dead-letter write failed: {exc!r}") from exc


class LogSink:
    """Logs each notification at WARNING (one JSON line with its fields)."""

    name = "log"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, n: Notification) -> str:
        log.warning(
            "notification: %s",
            n.subject,
            extra={"notification_id": n.notification_id, "kind": n.kind, "vin": n.vin, "details": n.details},
        )
        return DELIVERED


class KafkaSink:
    """Publishes each notification to ``<prefix>.notifications`` (key: VIN or ``account``)."""

    name = "kafka"

    def __init__(self, producer: Any, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, n: Notification) -> str:
        headers = [("notification_id", n.notification_id.encode()), ("kind", n.kind.encode())]
        try:
            await self._producer.send_and_wait(
                self.topic, value=n.to_json(), key=(n.vin or "account").encode(), headers=headers
            )
        except Exception as exc:  # aiokafka raises several unrelated types
            raise DeliveryError(f"kafka publish failed: {exc!r}") from exc
        return DELIVERED


class HttpSink:
    """POSTs the notification JSON, signed the Standard Webhooks way (see ``signing``), retrying with
    exponential backoff.

    Signed with every secret in ``secrets`` (several while rotating); without any it refuses to be
    built (``NotifyConfigError``) unless ``unsigned`` is set. Retries on connection errors,
    timeouts, 408, 429 and 5xx, ``attempts`` times in all, waiting ``backoff_s * 2**n`` (capped at
    ``backoff_max_s``) between tries; then — or at once on any other 4xx, which a retry will not
    fix — writes it to the dead-letter topic. The timestamp and signatures are recomputed for each
    attempt; ``webhook-id`` (the notification id) stays the same.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        secrets: Sequence[str | bytes] = (),
        unsigned: bool = False,
        attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 10.0,
        dead_letter: DeadLetter | None = None,
    ) -> None:
        if not secrets and not unsigned:
            raise NotifyConfigError("an HTTP notification sink needs a signing secret (or unsigned=True)")
        try:
            self._keys = [secret_key(s) for s in secrets]
        except SecretError as exc:
            raise NotifyConfigError(f"notification signing secret: {exc}") from None
        self.url = url
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._timeout_s = timeout_s
        self._dead_letter = dead_letter
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver(self, n: Notification) -> str:
        await self.start()
        assert self._client is not None
        body = n.to_json()
        reason = ""
        backoff = Backoff(self._backoff_s, self._backoff_max_s)
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(backoff.next())
            headers = {
                "Content-Type": "application/json",
                KIND_HEADER: n.kind,
                **signed_headers(self._keys, n.notification_id, body),
            }
            try:
                resp = await self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.info("notification POST failed, will retry", extra={"attempt": attempt + 1, "error": reason})
                continue
            if resp.is_success:
                return DELIVERED
            reason = f"HTTP {resp.status_code}"
            if resp.status_code not in (408, 429) and resp.status_code < 500:
                break  # a client error: retrying will not help
            log.info("notification POST refused, will retry", extra={"attempt": attempt + 1, "status": resp.status_code})
        if self._dead_letter is None:
            raise DeliveryError(f"HTTP delivery failed: {reason}")
        log.warning(
            "notification dead-lettered after HTTP failures",
            extra={"notification_id": n.notification_id, "error": reason},
        )
        await self._dead_letter(n, self.name, reason)
        return DEAD_LETTERED
