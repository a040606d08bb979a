"""An alerts or errors event as plain values (``parse_event``): the alert entries with their
start/end times and the error entries with their tags; ``InvalidEventError`` for what cannot be
applied (the worker dead-letters it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumers.errors import InvalidEventError
from schemas.times import to_ms

__all__ = ["AlertEntry", "ErrorEntry", "InvalidEventError", "ParsedEvent", "parse_event"]


_DETAIL_KEYS = (
    "description",
    "customerFacingMessage1",
    "customerFacingMessage2",
    "condition",
    "clearCondition",
    "potentialImpact",
)




@dataclass(frozen=True, slots=True)
class AlertEntry:
    name: str
    audiences: tuple[str, ...]
    started_at_ms: int
    ended_at_ms: int | None
    details: dict[str, str]
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    name: str
    created_at_ms: int
    body: str | None
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    event_id: str
    type: str  # alerts | errors
    vin: str
    created_at_ms: int
    is_cache: bool
    alerts: tuple[AlertEntry, ...] = ()
    errors: tuple[ErrorEntry, ...] = ()


def parse_event(env: Any) -> ParsedEvent:
    """An ``Envelope`` of type alerts or errors as plain values; raises ``InvalidEventError``."""
    etype = str(getattr(env.type, "value", env.type))
    payload = env.payload
    vin = env.vin or payload.get("vin")
    if not isinstance(vin, str) or not vin:
        raise InvalidEventError(f"{etype} event without a VIN")
    is_cache = payload.get("isCache") is True
    if etype == "alerts":
        items = payload.get("alerts")
        if not isinstance(items, list):
            raise InvalidEventError("alerts must be an array")
        alerts = tuple(_alert_entry(a, i) for i, a in enumerate(items))
        return ParsedEvent(env.event_id, etype, vin, env.created_at_ms, is_cache, alerts=alerts)
    if etype == "errors":
        items = payload.get("errors")
        if not isinstance(items, list):
            raise InvalidEventError("errors must be an array")
        errors = tuple(_error_entry(e, i, env.created_at_ms) for i, e in enumerate(items))
        return ParsedEvent(env.event_id, etype, vin, env.created_at_ms, is_cache, errors=errors)
    raise InvalidEventError(f"not an alerts or errors event: {etype}")


def _alert_entry(a: Any, i: int) -> AlertEntry:
    if not isinstance(a, dict):
        raise InvalidEventError(f"alerts[{i}] is not an object")
    name = a.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidEventError(f"alerts[{i}] has no name")
    started = to_ms(a.get("startedAt"))
    if started is None:
        raise InvalidEventError(f"alerts[{i}] ({name}) has no valid startedAt")
    ended = None
    if a.get("endedAt") not in (None, ""):
        ended = to_ms(a["endedAt"])
        if ended is None:
            raise InvalidEventError(f"alerts[{i}] ({name}) has an invalid endedAt {a['endedAt']!r}")
    audiences = a.get("audiences") or []
    if not isinstance(audiences, list):
        audiences = [audiences]
    details = {k: str(a[k]) for k in _DETAIL_KEYS if a.get(k) is not None}
    return AlertEntry(name, tuple(str(x) for x in audiences), started, ended, details, a)


def _error_entry(e: Any, i: int, default_ms: int) -> ErrorEntry:
    if not isinstance(e, dict):
        raise InvalidEventError(f"errors[{i}] is not an object")
    name = e.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidEventError(f"errors[{i}] has no name")
    created = to_ms(e.get("createdAt"))
    tags = e.get("tags") or {}
    if not isinstance(tags, dict):
        raise InvalidEventError(f"errors[{i}] tags must be an object")
    body = e.get("body")
    return ErrorEntry(
        name,
        created if created is not None else default_ms,
        None if body is None else str(body),
        {str(k): "" if v is None else str(v) for k, v in tags.items()},
    )
