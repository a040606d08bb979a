"""Turning webhook bodies and envelopes into Kafka records: topic, key, headers and value.

The receiver spools each body as received (``frame.encode_raw``); the forwarder calls
``RecordBuilder.expand`` on it just before publishing. ``--durability broker`` builds records on
the request path with ``record``.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from ingest.spool import frame
from ingest.spool.frame import SpoolRecord
from schemas import topics
from schemas.envelope import Envelope
from schemas.parse import BodyError, parse_body

Validator = Callable[[Envelope], list[str]]

#: per event type: [events built, of which invalid (sent to the DLQ)]
TypeCounts = dict[str, list[int]]


class RecordBuilder:
    def __init__(self, prefix: str, validator: Validator | None) -> None:
        self.prefix = prefix
        self.dlq = topics.dlq_topic(prefix)
        self._validator = validator
        self._topic_cache: dict[str, str] = {}

    def topic(self, env: Envelope) -> str:
        t = self._topic_cache.get(env.type)
        if t is None:
            t = self._topic_cache[env.type] = topics.topic_for(env.type, self.prefix)
        return t

    def record(self, env: Envelope) -> tuple[SpoolRecord, list[str] | None]:
        """The Kafka record for one envelope, and its validation errors (then it goes to the DLQ)."""
        headers = topics.headers_for(env)
        errors = self._validator(env) if self._validator is not None else None
        topic = self.topic(env)
        if errors:
            # same header names as the workers' dead letters (consumers.runtime.dlq)
            headers = [
                *headers,
                ("dlq_error_type", b"SchemaValidationError"),
                ("dlq_error", "; ".join(errors[:5]).encode()[:1000]),
                ("dlq_worker", b"receiver"),
                ("dlq_source_topic", topic.encode()),
                ("validation_errors", orjson.dumps(errors[:20])),
            ]
            topic = self.dlq
        rec = SpoolRecord(topic, topics.key_for(env), headers, env.created_at_ms, env.received_at_ms, env.to_json())
        return rec, errors or None

    def build(self, env: Envelope) -> tuple[str, bytes, list[str] | None]:
        """(topic, frame bytes, validation errors or None) for one envelope."""
        rec, errors = self.record(env)
        return rec.topic, frame.encode(*rec), errors

    def expand(self, raw: SpoolRecord, counts: TypeCounts) -> list[SpoolRecord]:
        """The records for one spooled webhook body (a ``RAW_TOPIC`` frame), counted per type.

        The receiver checked the body before spooling it, so ``BodyError`` here means a body spooled
        by a receiver with other parsing rules: it is kept, as a dead letter holding the body.
        """
        try:
            envs = parse_body(raw.value, received_at_ms=raw.timestamp_ms)
        except BodyError as exc:
            headers = [
                ("dlq_error_type", b"BodyError"),
                ("dlq_error", exc.reason.encode()[:1000]),
                ("dlq_worker", b"receiver"),
                ("received_at_ms", str(raw.timestamp_ms).encode()),
            ]
            c = counts.setdefault("unparsed", [0, 0])
            c[0] += 1
            c[1] += 1
            return [SpoolRecord(self.dlq, b"", headers, raw.timestamp_ms, raw.spooled_at_ms, raw.value)]
        out: list[SpoolRecord] = []
        record = self.record
        for env in envs:
            rec, errors = record(env)
            out.append(rec)
            n = counts.get(env.type)
            if n is None:
                n = counts[env.type] = [0, 0]
            n[0] += 1
            if errors:
                n[1] += 1
        return out
