"""The envelope: what every record on an event topic carries (Kafka value = ``to_json()``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from schemas.errors import EnvelopeError
from schemas.event_types import EventType, SourceFormat

__all__ = ["SCHEMA_VERSION", "WIRE_KEYS", "Envelope", "EnvelopeError"]

#: Version of the envelope wire format (see README "schema_version policy").
SCHEMA_VERSION = 1

#: Keys of the wire JSON object, in the order written.
WIRE_KEYS: tuple[str, ...] = (
    "event_id",
    "type",
    "vin",
    "created_at",
    "created_at_ms",
    "received_at",
    "received_at_ms",
    "source_format",
    "schema_version",
    "payload",
)

_HEX = frozenset("0123456789abcdef")


@dataclass(slots=True, frozen=True)
class Envelope:
    """One event, normalised. See schemas/README.md for the meaning of each field."""

    event_id: str
    type: EventType
    vin: str | None
    created_at: str
    created_at_ms: int
    received_at: str
    received_at_ms: int
    source_format: SourceFormat
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The wire object (a new dict; ``payload`` is shared, not copied)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "vin": self.vin,
            "created_at": self.created_at,
            "created_at_ms": self.created_at_ms,
            "received_at": self.received_at,
            "received_at_ms": self.received_at_ms,
            "source_format": self.source_format,
            "schema_version": SCHEMA_VERSION,
            "payload": self.payload,
        }

    def to_json(self) -> bytes:
        """UTF-8 JSON bytes (orjson), the Kafka record value."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any) -> Envelope:
        """Build from a decoded wire object, checking every key; raises ``EnvelopeError``."""
        if not isinstance(d, dict):
            raise EnvelopeError(f"envelope must be a JSON object, got {type(d).__name__}")
        missing = [k for k in WIRE_KEYS if k not in d]
        if missing:
            raise EnvelopeError(f"envelope is missing {', '.join(missing)}")
        version = d["schema_version"]
        if type(version) is not int or version < 1:
            raise EnvelopeError(f"bad schema_version {version!r}")
        if version > SCHEMA_VERSION:
            raise EnvelopeError(f"schema_version {version} is newer than supported {SCHEMA_VERSION}")
        event_id = d["event_id"]
        if not isinstance(event_id, str) or len(event_id) != 32 or not _HEX.issuperset(event_id):
            raise EnvelopeError(f"bad event_id {event_id!r}")
        try:
            etype = EventType(d["type"])
        except ValueError:
            raise EnvelopeError(f"unknown type {d['type']!r}") from None
        try:
            fmt = SourceFormat(d["source_format"])
        except ValueError:
            raise EnvelopeError(f"unknown source_format {d['source_format']!r}") from None
        vin = d["vin"]
        if vin is not None and not isinstance(vin, str):
            raise EnvelopeError(f"vin must be a string or null, got {type(vin).__name__}")
        for key in ("created_at", "received_at"):
            if not isinstance(d[key], str):
                raise EnvelopeError(f"{key} must be a string")
        for key in ("created_at_ms", "received_at_ms"):
            if type(d[key]) is not int:
                raise EnvelopeError(f"{key} must be an integer")
        if not isinstance(d["payload"], dict):
            raise EnvelopeError("payload must be an object")
        return cls(
            event_id=event_id,
            type=etype,
            vin=vin,
            created_at=d["created_at"],
            created_at_ms=d["created_at_ms"],
            received_at=d["received_at"],
            received_at_ms=d["received_at_ms"],
            source_format=fmt,
            payload=d["payload"],
        )

    @classmethod
    def from_json(cls, b: bytes | bytearray | memoryview | str) -> Envelope:
        """Decode a Kafka record value; raises ``EnvelopeError`` on anything but a valid envelope.

        A fast path checks exactly what ``from_dict`` checks (on orjson's exact types) and builds the
        envelope without the dataclass ``__init__``; anything it does not accept goes through
        ``from_dict``, which gives the same envelope or raises the same error (~8 -> ~2 µs a record)."""
        try:
            d = orjson.loads(b)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise EnvelopeError(f"invalid JSON: {exc}") from None
        if type(d) is dict:
            g = d.get
            version, event_id, t, f, vin = g("schema_version"), g("event_id"), g("type"), g("source_format"), g("vin")
            cat, cat_ms, rat, rat_ms, payload = (
                g("created_at"), g("created_at_ms"), g("received_at"), g("received_at_ms"), g("payload")
            )
            if (
                type(version) is int and 1 <= version <= SCHEMA_VERSION
                and type(event_id) is str and len(event_id) == 32 and _HEX.issuperset(event_id)
                and type(t) is str and type(f) is str
                and (vin is None and "vin" in d or type(vin) is str)
                and type(cat) is str and type(rat) is str
                and type(cat_ms) is int and type(rat_ms) is int
                and type(payload) is dict
            ):
                etype = _TYPES.get(t)
                fmt = _FORMATS.get(f)
                if etype is not None and fmt is not None:
                    return new_envelope(event_id, etype, vin, cat, cat_ms, rat, rat_ms, fmt, payload)
        return cls.from_dict(d)


_TYPES = {m.value: m for m in EventType}
_FORMATS = {m.value: m for m in SourceFormat}
_new = object.__new__
(_s_id, _s_type, _s_vin, _s_cat, _s_catms, _s_rat, _s_ratms, _s_fmt, _s_payload) = (
    getattr(Envelope, name).__set__ for name in Envelope.__dataclass_fields__
)


def new_envelope(
    event_id: str,
    type: EventType,
    vin: str | None,
    created_at: str,
    created_at_ms: int,
    received_at: str,
    received_at_ms: int,
    source_format: SourceFormat,
    payload: dict[str, Any],
) -> Envelope:
    """Same as ``Envelope(...)`` (positional, same order) but ~2x cheaper: the frozen
    dataclass ``__init__`` goes through ``object.__setattr__`` per field; this sets the slots
    directly. For the parse hot path."""
    env: Envelope = _new(Envelope)
    _s_id(env, event_id)
    _s_type(env, type)
    _s_vin(env, vin)
    _s_cat(env, created_at)
    _s_catms(env, created_at_ms)
    _s_rat(env, received_at)
    _s_ratms(env, received_at_ms)
    _s_fmt(env, source_format)
    _s_payload(env, payload)
    return env
