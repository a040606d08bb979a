"""Webhook bodies for the parser tests: the event fixtures, and ``one`` for a body that must give
exactly one envelope."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.envelope import Envelope
from schemas.parse import parse_body
from tests.support.paths import FIXTURES

VIN = "LRW3F7EK4NC700000"
RX = 1_746_171_080_123  # received_at_ms used throughout
RX_ISO = "2025-05-02T07:31:20.123Z"


def load(rel: str) -> bytes:
    """A fixture body, ``tests/fixtures/events/<rel>``."""
    return (FIXTURES / rel).read_bytes()


def one(body: bytes | str | dict[str, Any] | list[Any], rx: int = RX) -> Envelope:
    """The one envelope of ``body`` (an object or a list is sent as its JSON)."""
    if not isinstance(body, bytes | str):
        body = orjson.dumps(body)
    envs = parse_body(body, received_at_ms=rx)
    assert len(envs) == 1, envs
    return envs[0]
