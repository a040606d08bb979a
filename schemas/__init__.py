"""schemas: the event contract shared by the receiver (ingest) and the consumers.

Pure Python; no I/O at import except reading the packaged field catalog. Modules:

* ``event_types`` - EventType, SourceFormat, payload keys
* ``envelope``    - Envelope (the Kafka record value), SCHEMA_VERSION
* ``parse``       - parse_body: webhook body -> envelopes
* ``topics``      - topic names, record key and headers
* ``fields``      - telemetry field catalog and coerce_value for typed sinks
* ``errors``      - SchemaError, BodyError, EnvelopeError
"""

from schemas.envelope import SCHEMA_VERSION, Envelope
from schemas.errors import BodyError, EnvelopeError, SchemaError
from schemas.event_types import ENERGY_TYPES, VEHICLE_TYPES, EventType, SourceFormat
from schemas.parse import event_id_for, parse_body, parse_object
from schemas.topics import (
    all_event_topics,
    all_topics,
    dlq_topic,
    headers_for,
    key_for,
    notifications_topic,
    topic_for,
)

__all__ = [
    "ENERGY_TYPES",
    "SCHEMA_VERSION",
    "VEHICLE_TYPES",
    "BodyError",
    "Envelope",
    "EnvelopeError",
    "EventType",
    "SchemaError",
    "SourceFormat",
    "all_event_topics",
    "all_topics",
    "dlq_topic",
    "event_id_for",
    "headers_for",
    "key_for",
    "notifications_topic",
    "parse_body",
    "parse_object",
    "topic_for",
]
