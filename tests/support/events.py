"""Envelopes for tests, made by the real parser from Teslemetry-format event objects.

    env = data_event(vin, BASE_MS, {"Soc": 50.0})
    envs = envelopes(credit_events(start_ms=START))
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.envelope import Envelope
from schemas.parse import parse_object
from schemas.times import ms_to_iso

DAY = 86_400_000
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: where the tests' event times start
RECEIVED_MS = BASE_MS + 120 * DAY  # 2026-05-01T00:00:00Z: a receive time after every test stream's events
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(when: int | datetime) -> str:
    """Epoch ms (or an aware datetime, cut to the ms) as the ISO-8601 UTC text Teslemetry sends
    (``2026-01-01T00:00:00.000Z``)."""
    if isinstance(when, datetime):
        when = (when - _EPOCH) // timedelta(milliseconds=1)
    return ms_to_iso(when)


def envelopes(objs: Iterable[dict[str, Any]], received_at_ms: int = RECEIVED_MS) -> list[Envelope]:
    """Every envelope the receiver makes of these event objects (one object may give several)."""
    return [env for o in objs for env in parse_object(o, received_at_ms=received_at_ms)]


def event(obj: dict[str, Any], received_at_ms: int = RECEIVED_MS) -> Envelope:
    """The one envelope of one event object."""
    (env,) = envelopes([obj], received_at_ms)
    return env


def data_event(vin: str, ms: int, data: dict[str, Any]) -> Envelope:
    return event({"createdAt": iso(ms), "vin": vin, "data": data})


def state_event(vin: str, ms: int, state: str) -> Envelope:
    return event({"createdAt": iso(ms), "vin": vin, "state": state})
