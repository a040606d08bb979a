"""Where replayed events go: a Kafka topic, a JSON-lines file (or stdout), or a webhook URL."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from consumers.replay.selection import ReplayError, ReplayEvent
from plumbing.kafka_clients import ensure_topics, make_producer
from plumbing.logs import redact, register_secret
from plumbing.retry import Backoff
from plumbing.settings import KafkaSettings

__all__ = ["FileSink", "Sink", "TopicSink", "UrlSink"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    async def start(self) -> None: ...
    async def send(self, ev: ReplayEvent) -> None: ...
    async def close(self) -> None: ...
    def summary(self) -> dict[str, Any]: ...


class TopicSink:
    """Re-publishes each record as it was (value, key, headers, timestamp = created_at_ms)."""

    _WINDOW = 2000  # delivery futures in flight before waiting for the oldest half

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self.count = 0

    async def start(self) -> None:
        await ensure_topics(self.settings, [self.topic])
        self._producer = make_producer(self.settings, role="replay")
        await self._producer.start()

    async def send(self, ev: ReplayEvent) -> None:
        assert self._producer is not None
        fut = await self._producer.send(
            self.topic, ev.value, key=ev.key, headers=ev.headers, timestamp_ms=ev.created_at_ms
        )
        self._pending.append(fut)
        self.count += 1
        if len(self._pending) >= self._WINDOW:
            half, self._pending = self._pending[: self._WINDOW // 2], self._pending[self._WINDOW // 2 :]
            await asyncio.gather(*half)

    async def close(self) -> None:
        if self._producer is None:
            return
        try:
            await self._producer.flush()
            await asyncio.gather(*self._pending)
        finally:
            self._pending = []
            await self._producer.stop()
            self._producer = None

    def summary(self) -> dict[str, Any]:
        return {"target": f"topic {self.topic}", "sent": self.count}


class FileSink:
    """One envelope JSON object per line; ``-`` writes to stdout."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None
        self.count = 0

    async def start(self) -> None:
        if self.path == "-":
            self._fh = sys.stdout.buffer
        else:
            p = Path(self.path)
            if p.parent and not p.parent.exists():
                raise ReplayError(f"directory {p.parent} does not exist")
            self._fh = await asyncio.to_thread(p.open, "wb")

    async def send(self, ev: ReplayEvent) -> None:
        assert self._fh is not None
        self._fh.write(ev.value)
        self._fh.write(b"\n")
        self.count += 1

    async def close(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        if self._fh is not sys.stdout.buffer:
            self._fh.close()
        self._fh = None

    def summary(self) -> dict[str, Any]:
        return {"target": "stdout" if self.path == "-" else f"file {self.path}", "sent": self.count}


class UrlSink:
    """POSTs each event's payload (the Teslemetry format) to a webhook receiver, one at a time.

    The receiver derives the event id from (type, vin, createdAt, payload), so this project's
    receiver computes the same ``event_id`` again; its 202 answer lists the ids it computed and
    any difference is counted (``id_mismatches``). 429/5xx and connection errors are retried
    (``Retry-After`` honoured); any other non-2xx answer stops the replay.

    The URL may carry the receiver's token (``?token=...``): it is requested as given, but shown
    (summary, errors, logs) as ``shown_url``, with the token's value redacted, and the value is
    registered as a secret so no log line carries it either.
    """

    RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

    def __init__(self, url: str, token: str | None, *, timeout_s: float = 30.0, max_attempts: int = 8) -> None:
        parts = urlsplit(url)
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower().endswith("token"):
                register_secret(value)
        register_secret(token)
        register_secret(parts.password)  # http://user:password@host/...
        self.url = url
        self.shown_url = redact(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReplayError(f"--to-url must be an http:// or https:// URL with a host, not {self.shown_url!r}")
        self.token = token
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self._client: httpx.AsyncClient | None = None
        self.count = 0
        self.retries = 0
        self.id_mismatches = 0

    async def start(self) -> None:
        headers = {"content-type": "application/json", "user-agent": "tpipe-replay"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        self._client = httpx.AsyncClient(headers=headers, timeout=self.timeout_s)

    async def send(self, ev: ReplayEvent) -> None:
        await self.post(orjson.dumps(ev.payload()), ev.event_id)

    async def post(self, body: bytes, event_id: str | None = None) -> None:
        """POST one webhook body (retried like ``send``); ``event_id``: the id the receiver should compute."""
        assert self._client is not None
        backoff = Backoff(0.5, cap=30.0)
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = await self._client.post(self.url, content=body)
            except httpx.TransportError as exc:
                if attempt == self.max_attempts:
                    raise ReplayError(f"POST {self.shown_url} failed after {attempt} attempts: {exc!r}") from exc
                wait = backoff.next()
            else:
                if resp.status_code < 300:
                    self._check_ids(event_id, resp)
                    self.count += 1
                    return
                if resp.status_code not in self.RETRY_STATUS or attempt == self.max_attempts:
                    raise ReplayError(
                        f"POST {self.shown_url} answered {resp.status_code}: {resp.text[:300]}"
                        f" (event {event_id or '?'}; {self.count} events were sent before it)"
                    )
                wait = _retry_after(resp) or backoff.next()
            self.retries += 1
            log.warning("replay POST retried", extra={"attempt": attempt, "wait_s": wait, "event_id": event_id})
            await asyncio.sleep(wait)

    def _check_ids(self, event_id: str | None, resp: httpx.Response) -> None:
        if event_id is None:
            return
        try:
            events = resp.json().get("events")
        except (ValueError, AttributeError):
            return  # another receiver: nothing to compare
        if isinstance(events, list) and events:
            ids = {e.get("event_id") for e in events if isinstance(e, dict)}
            if event_id not in ids:
                self.id_mismatches += 1
                log.warning("receiver computed a different event_id",
                            extra={"event_id": event_id, "receiver_ids": sorted(str(i) for i in ids)})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def summary(self) -> dict[str, Any]:
        return {"target": f"url {self.shown_url}", "sent": self.count, "retries": self.retries,
                "id_mismatches": self.id_mismatches}


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None
