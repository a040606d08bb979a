"""Turning parsed envelopes into spool frames: topic, key, headers and value, decided once."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from ingest.spool import frame
from schemas import topics
from schemas.envelope import Envelope

Validator = Callable[[Envelope], list[str]]


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

    def build(self, env: Envelope) -> tuple[str, bytes, list[str] | None]:
        """(topic, frame bytes, validation errors or None) for one envelope."""
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
        data = frame.encode(topic, topics.key_for(env), headers, env.created_at_ms, env.received_at_ms, env.to_json())
        return topic, data, errors or None
