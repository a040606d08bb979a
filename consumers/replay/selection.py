"""What a replay selects (event types, an event-time window, VINs) and the event it yields."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from consumers.errors import ReplayError
from consumers.replay.dedup import DEFAULT_HORIZON_MS
from schemas.event_types import EventType
from schemas.topics import topic_for

__all__ = ["ReplayError", "ReplayEvent", "Selection", "parse_types"]




def parse_types(values: Iterable[str] | None) -> tuple[EventType, ...]:
    """``["data,alerts", "state"]`` -> the event types, in enum order (None/empty: all of them)."""
    names = [n.strip() for v in values or () for n in v.split(",") if n.strip()]
    if not names or names == ["all"]:
        return tuple(EventType)
    chosen: set[EventType] = set()
    for n in names:
        try:
            chosen.add(EventType(n))
        except ValueError:
            known = ", ".join(t.value for t in EventType)
            raise ReplayError(f"unknown event type {n!r} (known: {known})") from None
    return tuple(t for t in EventType if t in chosen)


@dataclass(frozen=True, slots=True)
class Selection:
    """Events with ``from_ms <= created_at_ms < to_ms`` of ``types``, for ``vins`` (empty: all).

    ``slack_ms`` bounds how late (in arrival order) an event may be relative to later-created
    events of the same partition: Kafka reading starts at the offset for ``from_ms - slack_ms``
    and stops at the first record created after ``to_ms + slack_ms``.
    """

    types: tuple[EventType, ...]
    from_ms: int | None
    to_ms: int
    vins: frozenset[str] = frozenset()
    slack_ms: int = 3_600_000
    #: how long (receive time) a Kafka replay remembers an event_id per partition to drop redeliveries
    dedup_horizon_ms: int = DEFAULT_HORIZON_MS

    @classmethod
    def build(
        cls,
        *,
        types: Iterable[str] | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        vins: Iterable[str] | None = None,
        slack_ms: int = 3_600_000,
        dedup_horizon_ms: int = DEFAULT_HORIZON_MS,
    ) -> Selection:
        end = int(time.time() * 1000) if to_ms is None else to_ms
        if from_ms is not None and from_ms >= end:
            raise ReplayError("--from must be earlier than --to")
        if slack_ms < 0:
            raise ReplayError("--slack must not be negative")
        if dedup_horizon_ms < 0:
            raise ReplayError("--dedup-horizon must not be negative")
        return cls(parse_types(types), from_ms, end, frozenset(v for v in vins or () if v), slack_ms,
                   dedup_horizon_ms)

    def in_window(self, created_at_ms: int) -> bool:
        return (self.from_ms is None or created_at_ms >= self.from_ms) and created_at_ms < self.to_ms

    def wants_vin(self, vin: str | None) -> bool:
        return not self.vins or (vin is not None and vin in self.vins)

    def topics(self, prefix: str) -> dict[str, EventType]:
        """Source topic -> event type."""
        return {topic_for(t, prefix): t for t in self.types}


@dataclass(slots=True)
class ReplayEvent:
    """One selected event: the envelope JSON as stored in Kafka, with its key and headers."""

    type: str
    vin: str | None
    created_at_ms: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    event_id: str | None = None

    def envelope_dict(self) -> dict[str, Any]:
        d = orjson.loads(self.value)
        if not isinstance(d, dict):
            raise ReplayError("record value is not a JSON object")
        return d

    def payload(self) -> dict[str, Any]:
        """The event in Teslemetry form, as the receiver first got it (normalised)."""
        payload = self.envelope_dict().get("payload")
        if not isinstance(payload, dict):
            raise ReplayError(f"event {self.event_id or '?'} has no payload object")
        return payload
