"""Turning webhook bodies and envelopes into Kafka records: topic, key, headers and value.

The receiver spools each body as received (``ingest.spool.frame``); the forwarder calls
``RecordBuilder.expand`` on it just before publishing. ``--durability broker`` builds records on
the request path with ``record``.

Nothing here can stop the forwarder: a body the parser refuses, or an event whose record cannot be
built, becomes a dead letter (``<prefix>.dlq``, reason in the ``schemas.dlq`` headers) and the
next one goes on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from ingest.forward.topic_rules import NO_RULE, TopicRule
from ingest.spool.frame import SpooledBody
from schemas import topics
from schemas.body import DEFAULT_LIMITS, BodyLimits, decode_body
from schemas.dlq import dlq_headers
from schemas.envelope import Envelope
from schemas.parse import BodyError, parse_body, parse_object

log = logging.getLogger("tpipe.forwarder")

Validator = Callable[[Envelope], list[str]]

#: per event type: [events built, of which dead-lettered]
TypeCounts = dict[str, list[int]]

#: header added when the record timestamp is the receive time, not the event's ``created_at``
TIMESTAMP_SOURCE = "timestamp_source"
_RECEIVED_AT = b"received_at"
WORKER = "receiver"


class KafkaRecord(NamedTuple):
    """One record to publish. ``received_at_ms``: when the receiver got its body (the record
    timestamp used instead of ``created_at`` when a topic refuses the event's own time)."""

    topic: str
    key: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    received_at_ms: int
    value: bytes


def _count(counts: TypeCounts, etype: str, dead: bool) -> None:
    n = counts.get(etype)
    if n is None:
        n = counts[etype] = [0, 0]
    n[0] += 1
    if dead:
        n[1] += 1


class RecordBuilder:
    def __init__(self, prefix: str, validator: Validator | None, limits: BodyLimits = DEFAULT_LIMITS) -> None:
        self.prefix = prefix
        self.dlq = topics.dlq_topic(prefix)
        self.limits = limits
        #: per topic, the record timestamps and sizes it accepts (``ingest.forward.topic_rules``);
        #: none known: anything (Kafka's answer decides)
        self.rules: dict[str, TopicRule] = {}
        #: what happened to records on their way (``timestamp_replaced``, ``dlq:<reason>``), read and
        #: cleared by the forwarder's reports (``ingest.forward.health.apply_tally``)
        self.tally: Counter[str] = Counter()
        self._validator = validator
        self._topic_cache: dict[str, str] = {}

    def batch_bytes(self, topic: str) -> int | None:
        """The largest batch to build for ``topic`` (below its ``max.message.bytes``), None: the producer's."""
        rule = self.rules.get(topic)
        return None if rule is None else rule.batch_bytes()

    def topic(self, env: Envelope) -> str:
        t = self._topic_cache.get(env.type)
        if t is None:
            t = self._topic_cache[env.type] = topics.topic_for(env.type, self.prefix)
        return t

    def record(self, env: Envelope, now_ms: int | None = None) -> tuple[KafkaRecord, list[str] | None]:
        """The Kafka record for one envelope, and its validation errors (then it goes to the DLQ)."""
        headers = topics.headers_for(env)
        errors = self._validator(env) if self._validator is not None else None
        topic = self.topic(env)
        if errors:
            headers = dlq_headers(headers, reason="; ".join(errors[:5]), error_type="SchemaValidationError",
                                  worker=WORKER, source_topic=topic)
            headers.append(("validation_errors", orjson.dumps(errors[:20])))
            topic = self.dlq
            self.tally["dlq:schema_invalid"] += 1
        rec = KafkaRecord(topic, topics.key_for(env), headers, env.created_at_ms, env.received_at_ms, env.to_json())
        if self.rules:
            rec = self.fit(rec, now_ms)
        return rec, errors or None

    # ---- what Kafka would refuse ------------------------------------------------------------------
    def fit(self, rec: KafkaRecord, now_ms: int | None = None) -> KafkaRecord:
        """``rec`` as its topic will take it: stamped with its receive time if the topic would refuse
        its own timestamp; dead-lettered if it is larger than the topic takes."""
        rule = self.rules.get(rec.topic, NO_RULE)
        limit = rule.max_message_bytes
        if limit is not None and _too_large(rec, limit, exact=rec.topic == self.dlq):
            self.tally["dlq:kafka_refused"] += 1
            return self.dead_letter(rec, f"the record ({len(rec.value)} bytes) is larger than {rec.topic} takes "
                                    f"(max.message.bytes {limit})", "RecordTooLarge")
        if rec.timestamp_ms == rec.received_at_ms:
            return rec
        if not rule.bounds.refuses(rec.timestamp_ms, now_ms if now_ms is not None else int(time.time() * 1000)):
            return rec
        self.tally["timestamp_replaced"] += 1
        return with_received_time(rec)

    def dead_letter(self, rec: KafkaRecord, reason: str, error_type: str) -> KafkaRecord:
        """The DLQ record for a record Kafka refused for good (same key, value and headers)."""
        headers = dlq_headers(rec.headers, reason=reason, error_type=error_type, worker=WORKER,
                              source_topic=rec.topic if rec.topic != self.dlq else None)
        dead = KafkaRecord(self.dlq, rec.key, headers, rec.timestamp_ms, rec.received_at_ms, rec.value)
        rule = self.rules.get(self.dlq, NO_RULE)
        if rule.bounds.refuses(dead.timestamp_ms, int(time.time() * 1000)):
            return with_received_time(dead)
        return dead

    def raw_dead_letter(self, raw: SpooledBody, reason: str, error_type: str, **extra: str) -> KafkaRecord:
        headers = dlq_headers([], reason=reason, error_type=error_type, worker=WORKER)
        headers.append(("received_at_ms", str(raw.received_at_ms).encode()))
        headers.extend((k, v.encode()) for k, v in extra.items())
        return KafkaRecord(self.dlq, b"", headers, raw.received_at_ms, raw.received_at_ms, raw.body)

    # ---- one spooled body -> its records ----------------------------------------------------------
    def expand(self, raw: SpooledBody, counts: TypeCounts) -> list[KafkaRecord]:
        """The records for one spooled webhook body, counted per type.

        A body the parser refuses (spooled under other rules or limits) is kept as a dead letter
        holding the body. An event whose record cannot be built is dead-lettered on its own
        (``expand_each``); the body's other events are published.
        """
        if raw.legacy_topic is not None:  # a ready record spooled by a receiver from before the raw spool
            self.tally["dlq:legacy_frame"] += 1
            return [self.raw_dead_letter(raw, f"spooled as a ready record for {raw.legacy_topic} by an older "
                                         "receiver; redrive it to that topic", "LegacySpoolFrame",
                                         dlq_source_topic=raw.legacy_topic)]
        try:
            envs = parse_body(raw.body, received_at_ms=raw.received_at_ms, limits=self.limits)
        except BodyError as exc:
            _count(counts, "unparsed", True)
            self.tally["dlq:body_unparsed"] += 1
            return [self.raw_dead_letter(raw, exc.reason, type(exc).__name__)]
        except Exception:
            return self.expand_each(raw, counts)
        out: list[KafkaRecord] = []
        now_ms = int(time.time() * 1000) if self.rules else None
        try:
            for env in envs:
                rec, errors = self.record(env, now_ms)
                out.append(rec)
                _count(counts, env.type, errors is not None)
        except Exception:
            return self.expand_each(raw, counts)
        return out

    def expand_each(self, raw: SpooledBody, counts: TypeCounts) -> list[KafkaRecord]:
        """``expand`` one event at a time: each event whose parse or record raises is dead-lettered
        (its JSON when that can be written, else the whole body with the event's index)."""
        try:
            doc = decode_body(raw.body, self.limits)
        except BodyError as exc:
            _count(counts, "unparsed", True)
            self.tally["dlq:body_unparsed"] += 1
            return [self.raw_dead_letter(raw, exc.reason, type(exc).__name__)]
        items: list[Any] = [doc] if isinstance(doc, dict) else list(doc)
        out: list[KafkaRecord] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            try:
                for env in parse_object(item, received_at_ms=raw.received_at_ms):
                    if env.event_id in seen:
                        continue
                    seen.add(env.event_id)
                    rec, errors = self.record(env)
                    out.append(rec)
                    _count(counts, env.type, errors is not None)
            except Exception as exc:
                reason = f"event {i} of the body could not be built: {type(exc).__name__}: {exc}"
                log.error("event dead-lettered: its record could not be built",
                          extra={"item": i, "error": f"{type(exc).__name__}: {exc}"})
                _count(counts, "unbuildable", True)
                self.tally["dlq:event_unbuildable"] += 1
                out.append(self._item_dead_letter(raw, item, i, reason, type(exc).__name__))
        return out

    def _item_dead_letter(self, raw: SpooledBody, item: Any, index: int, reason: str, error_type: str) -> KafkaRecord:
        try:
            value = orjson.dumps(item)
        except Exception:  # the event cannot even be written alone: keep the body, say which event
            return self.raw_dead_letter(raw, reason, error_type, dlq_body_item=str(index))
        rec = self.raw_dead_letter(raw, reason, error_type)
        return rec._replace(value=value)


#: an event record's headers are its type, id, VIN, times, format and version (``topics.headers_for``,
#: and ``timestamp_source``): the VIN and ``created_at`` also appear in its value, the rest is short
_EVENT_HEADERS_BEYOND_VALUE = 512


def _too_large(rec: KafkaRecord, limit: int, *, exact: bool = True) -> bool:
    """Larger than ``limit`` even compressed (the broker checks the compressed batch); the
    compression is only tried for a record over the limit as it is. ``exact=False`` (an event
    record, not a dead letter with its reasons in headers): headers are bounded by the value, so a
    record far below the limit is passed without summing them (~1 µs an event)."""
    if not exact and 2 * len(rec.value) + len(rec.key) + 128 + _EVENT_HEADERS_BEYOND_VALUE <= limit:
        return False
    size = len(rec.value) + len(rec.key) + sum(len(k) + len(v) + 4 for k, v in rec.headers) + 128
    if size <= limit:
        return False
    import cramjam

    return len(cramjam.lz4.compress(rec.value)) + size - len(rec.value) > limit


def with_received_time(rec: KafkaRecord) -> KafkaRecord:
    """``rec`` with its receive time as record timestamp, saying so in ``timestamp_source``."""
    headers = [h for h in rec.headers if h[0] != TIMESTAMP_SOURCE]
    headers.append((TIMESTAMP_SOURCE, _RECEIVED_AT))
    return rec._replace(timestamp_ms=rec.received_at_ms, headers=headers)
