"""Run the receiver in-process for tests: the real app and lifespan, an httpx client over ASGI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from ingest.app import create_app
from ingest.settings import IngestSettings
from plumbing.settings import KafkaSettings
from schemas.parse import parse_body
from schemas.topics import topic_for

TOKEN = "test-token-5f1c2b9e"


def ingest_settings(kafka: KafkaSettings, spool_dir: Path, **overrides: Any) -> IngestSettings:
    base: dict[str, Any] = {
        **kafka.model_dump(),
        "token": [TOKEN],
        "spool_dir": spool_dir,
        "drain_timeout_s": 10.0,
    }
    base.update(overrides)
    return IngestSettings(**base)


@contextlib.asynccontextmanager
async def running_receiver(settings: IngestSettings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            yield app, client


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def events_of(body: bytes, prefix: str) -> list[dict[str, str]]:
    """The events the forwarder publishes for ``body`` (event_id, type, topic before validation).

    The spool-mode 202 carries no ids: they are computed after the body is on disk. They do not
    depend on the receive time when the events carry ``createdAt``, as these tests' bodies do.
    """
    return [
        {"event_id": e.event_id, "type": str(e.type), "topic": topic_for(e.type, prefix)}
        for e in parse_body(body, received_at_ms=0)
    ]
