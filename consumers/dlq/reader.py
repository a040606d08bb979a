"""Reading ``<prefix>.dlq``: every dead letter as a typed ``DlqRecord``, filtered.

The topic is read from its beginning to the end offsets captured when reading starts (so a read
always ends), with no consumer group (nothing is committed). Each record keeps its bytes (key,
value, headers) and exposes the dead-letter contract of ``schemas.dlq``: who dead-lettered it, why,
when, and where it came from. Three kinds of dead letters exist:

* ``event``: a record with a source topic (a worker's, or the receiver's ``SchemaValidationError`` /
  Kafka refusal): value = the envelope (or the original bytes), key = the VIN. It can go back to its
  topic (or another one).
* ``webhook_body``: the receiver could not parse a webhook body (``BodyError``, ``ForwarderCrash`` ...):
  value = the body as received, empty key, a ``received_at_ms`` header, no source topic. Only a
  receiver can turn it into events: it is redriven by POSTing it (``--to-url``).
* ``notification``: a notification no sink could deliver (``dlq_sink`` header). It has no topic of
  its own: only ``--to-topic`` sends it somewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.structs import TopicPartition

from plumbing.kafka_clients import make_admin, make_consumer
from plumbing.settings import KafkaSettings
from schemas.dlq import (
    DLQ_AT_MS,
    DLQ_ERROR,
    DLQ_ERROR_TYPE,
    DLQ_ONLY_HEADERS,
    DLQ_REDRIVEN_FROM,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_WORKER,
)
from schemas.times import format_ms
from schemas.topics import dlq_topic

__all__ = ["DlqFilter", "DlqRecord", "iter_dlq", "parse_position", "read_dlq"]

EVENT, WEBHOOK_BODY, NOTIFICATION = "event", "webhook_body", "notification"
_MAX_IDLE_POLLS = 30  # empty polls (1 s each) before a partition's read gives up short of its end offset


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One dead letter: where it sits in the DLQ, the ``dlq_*`` headers decoded, and its bytes."""

    partition: int
    offset: int
    timestamp_ms: int  # the record timestamp (the original record's: the event's created_at)
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    header: dict[str, str] = field(default_factory=dict)  # headers decoded (last one wins)

    @classmethod
    def from_kafka(cls, partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None,
                   headers: Collection[tuple[str, bytes | None]]) -> DlqRecord:
        hs = tuple((k, v or b"") for k, v in headers)
        return cls(partition, offset, timestamp_ms, key, value, hs,
                   {k: v.decode("utf-8", "replace") for k, v in hs})

    # --- the dead-letter contract -------------------------------------------------------------
    @property
    def position(self) -> str:
        """``partition:offset`` in the DLQ topic: how ``show`` and the redrive log name it."""
        return f"{self.partition}:{self.offset}"

    @property
    def at_ms(self) -> int:
        """When it was dead-lettered (``dlq_at_ms``; the record timestamp when absent)."""
        return _int(self.header.get(DLQ_AT_MS)) or self.timestamp_ms

    @property
    def worker(self) -> str:
        return self.header.get(DLQ_WORKER, "?")

    @property
    def error_type(self) -> str:
        return self.header.get(DLQ_ERROR_TYPE, "?")

    @property
    def reason(self) -> str:
        return self.header.get(DLQ_ERROR, "")

    @property
    def source_topic(self) -> str | None:
        return self.header.get(DLQ_SOURCE_TOPIC) or None

    @property
    def source_partition(self) -> int | None:
        return _int(self.header.get(DLQ_SOURCE_PARTITION))

    @property
    def source_offset(self) -> int | None:
        return _int(self.header.get(DLQ_SOURCE_OFFSET))

    @property
    def event_id(self) -> str | None:
        return self.header.get("event_id") or self.header.get("notification_id") or None

    @property
    def vin(self) -> str | None:
        if "vin" in self.header:
            return self.header["vin"] or None
        if self.kind == EVENT and self.key:
            return self.key.decode("utf-8", "replace")
        return None

    @property
    def redriven_from(self) -> str | None:
        """The DLQ position of an earlier dead letter this record is a redrive of (it failed again)."""
        return self.header.get(DLQ_REDRIVEN_FROM) or None

    @property
    def kind(self) -> str:
        if "dlq_sink" in self.header or "notification_id" in self.header:
            return NOTIFICATION
        if self.source_topic:
            return EVENT
        return WEBHOOK_BODY

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The record's own headers, without what dead-lettering added."""
        return [(k, v) for k, v in self.headers if k not in DLQ_ONLY_HEADERS]

    def payload(self) -> Any:
        """The value as JSON when it is JSON, else as text (None for no value)."""
        if self.value is None:
            return None
        try:
            return orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return self.value.decode("utf-8", "replace")

    # --- rendering ----------------------------------------------------------------------------
    def row(self) -> dict[str, Any]:
        """The listing row (``tpipe dlq list``)."""
        source = None
        if self.source_topic:
            source = self.source_topic
            if self.source_partition is not None:
                source += f":{self.source_partition}:{self.source_offset}"
        return {
            "dlq": self.position, "at": format_ms(self.at_ms), "worker": self.worker, "error_type": self.error_type,
            "reason": self.reason, "source": source or f"({self.kind.replace('_', ' ')})", "kind": self.kind,
            "source_topic": self.source_topic, "source_partition": self.source_partition,
            "source_offset": self.source_offset, "event_id": self.event_id, "vin": self.vin,
            "redriven_from": self.redriven_from,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything (``tpipe dlq show --format json``)."""
        return {**self.row(), "timestamp": format_ms(self.timestamp_ms),
                "key": None if self.key is None else self.key.decode("utf-8", "replace"),
                "headers": self.header, "value": self.payload()}


def parse_position(text: str) -> tuple[int, int] | None:
    """``3:120`` -> (3, 120); None when ``text`` is not a ``partition:offset``."""
    p, sep, o = text.partition(":")
    if sep and p.isdigit() and o.isdigit():
        return int(p), int(o)
    return None


@dataclass
class DlqFilter:
    """Which dead letters: every given criterion must hold (empty: all)."""

    workers: frozenset[str] = frozenset()
    error_types: frozenset[str] = frozenset()
    from_ms: int | None = None  # dead-lettered at or after
    to_ms: int | None = None  # dead-lettered before
    vins: frozenset[str] = frozenset()
    positions: frozenset[tuple[int, int]] = frozenset()  # (partition, offset) in the DLQ
    offsets: frozenset[int] = frozenset()  # an offset in any partition
    event_ids: frozenset[str] = frozenset()

    def matches(self, r: DlqRecord) -> bool:
        if self.workers and r.worker not in self.workers:
            return False
        if self.error_types and r.error_type not in self.error_types:
            return False
        if self.from_ms is not None and r.at_ms < self.from_ms:
            return False
        if self.to_ms is not None and r.at_ms >= self.to_ms:
            return False
        if self.vins and r.vin not in self.vins:
            return False
        ids = self.positions or self.offsets or self.event_ids
        if ids:
            return ((r.partition, r.offset) in self.positions or r.offset in self.offsets
                    or (r.event_id is not None and r.event_id in self.event_ids))
        return True


async def iter_dlq(settings: KafkaSettings, flt: DlqFilter | None = None, *,
                   topic: str | None = None) -> AsyncIterator[DlqRecord]:
    """The dead letters matching ``flt``, per partition in offset order (partitions one after the
    other), up to the end offsets seen when reading starts. A DLQ that does not exist yields nothing."""
    name = topic or dlq_topic(settings.topic_prefix)
    flt = flt or DlqFilter()
    from consumers.replay.kafka_meta import topic_partitions

    admin = make_admin(settings)
    await admin.start()
    try:
        parts = (await topic_partitions(admin)).get(name, [])
    finally:
        await admin.close()
    if not parts:
        return
    consumer = make_consumer(settings, group_id=None, role="dlq", max_poll_records=1000)
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        for tp in tps:
            if begins[tp] >= ends[tp]:
                continue
            consumer.assign([tp])
            consumer.seek(tp, begins[tp])
            idle = 0
            while await consumer.position(tp) < ends[tp] and idle < _MAX_IDLE_POLLS:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                idle = 0 if batch.get(tp) else idle + 1
                for rec in batch.get(tp, ()):
                    if rec.offset >= ends[tp]:
                        break
                    r = DlqRecord.from_kafka(rec.partition, rec.offset, rec.timestamp, rec.key, rec.value,
                                             rec.headers or ())
                    if flt.matches(r):
                        yield r
    finally:
        await consumer.stop()


async def read_dlq(settings: KafkaSettings, flt: DlqFilter | None = None, *, limit: int | None = None) -> list[DlqRecord]:
    """The matching dead letters, oldest dead-lettered first; with ``limit`` the newest ``limit``."""
    out = [r async for r in iter_dlq(settings, flt)]
    out.sort(key=lambda r: (r.at_ms, r.partition, r.offset))
    return out[-limit:] if limit else out
