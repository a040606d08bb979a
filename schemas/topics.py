"""The Kafka contract: topic names, record keys and headers (see schemas/README.md).

Record value = ``Envelope.to_json()``; record timestamp = ``Envelope.created_at_ms``;
partitioning = by key (VIN / site id), so one vehicle's events stay in order per topic.
"""

from __future__ import annotations

from schemas.envelope import SCHEMA_VERSION, Envelope
from schemas.event_types import EventType, SourceFormat

__all__ = [
    "HEADER_NAMES",
    "all_event_topics",
    "all_topics",
    "dlq_redriven_topic",
    "dlq_topic",
    "headers_for",
    "key_for",
    "notifications_topic",
    "topic_for",
]

#: Header names written on every event record, in order.
HEADER_NAMES: tuple[str, ...] = (
    "event_type",
    "event_id",
    "vin",
    "created_at",
    "received_at",
    "source_format",
    "schema_version",
)
_SCHEMA_VERSION_B = str(SCHEMA_VERSION).encode()
_ACCOUNT = b"account"
_UNKNOWN = b"unknown"
# The event_type / source_format header of each member, built once: Enum ``.value`` is a
# Python-level property, and these two headers take a fixed set of values.
_TYPE_HEADERS = {t: ("event_type", t.value.encode()) for t in EventType}
_FORMAT_HEADERS = {f: ("source_format", f.value.encode()) for f in SourceFormat}


def topic_for(type: EventType | str, prefix: str) -> str:
    """``{prefix}.{type}``, e.g. ``teslemetry.data``."""
    return f"{prefix}.{type}"


def dlq_topic(prefix: str) -> str:
    """``{prefix}.dlq``: records a consumer could not process (original value and headers)."""
    return f"{prefix}.dlq"


def dlq_redriven_topic(prefix: str) -> str:
    """``{prefix}.dlq.redriven`` (compacted): which dead letters ``tpipe dlq redrive`` sent back, and where."""
    return f"{prefix}.dlq.redriven"


def notifications_topic(prefix: str) -> str:
    """``{prefix}.notifications``: notifications produced by the alerts worker."""
    return f"{prefix}.notifications"


def all_event_topics(prefix: str) -> list[str]:
    """One topic per ``EventType`` (including ``unknown``), in enum order."""
    return [f"{prefix}.{t}" for t in EventType]


def all_topics(prefix: str) -> list[str]:
    """Every topic of the contract: event topics, then dlq and notifications."""
    return [*all_event_topics(prefix), dlq_topic(prefix), notifications_topic(prefix)]


def key_for(env: Envelope) -> bytes:
    """Record key: VIN (site id for energy events); ``account`` for credits without a VIN;
    ``unknown`` when there is no id at all."""
    if env.vin is not None:
        return env.vin.encode()
    if env.type is EventType.CREDITS:
        return _ACCOUNT
    return _UNKNOWN


def headers_for(env: Envelope) -> list[tuple[str, bytes]]:
    """Record headers (all UTF-8 strings; ``vin`` empty when the envelope has none)."""
    etype, fmt = env.type, env.source_format
    return [
        # (the table only for real members, so that anything else fails as it always did)
        _TYPE_HEADERS[etype] if type(etype) is EventType else ("event_type", etype.value.encode()),
        ("event_id", env.event_id.encode()),
        ("vin", env.vin.encode() if env.vin is not None else b""),
        ("created_at", env.created_at.encode()),
        ("received_at", env.received_at.encode()),
        _FORMAT_HEADERS[fmt] if type(fmt) is SourceFormat else ("source_format", fmt.value.encode()),
        ("schema_version", _SCHEMA_VERSION_B),
    ]
