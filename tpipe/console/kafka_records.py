"""Reading records from Kafka for the console: a range of offsets per partition, the newest records
of a time window (the Events page), one record by its position (an event's detail).

Every read is bounded: by offsets (computed before reading, so records arriving meanwhile are not
waited for), by a record limit and by a deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

__all__ = ["KafkaEvent", "newest_in_window", "read_one", "read_records"]


@dataclass(slots=True)
class KafkaEvent:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    headers: dict[str, str]
    value: bytes

    @classmethod
    def of(cls, r: ConsumerRecord[Any, Any]) -> KafkaEvent:
        return cls(r.topic, r.partition, r.offset, r.timestamp, r.key.decode(errors="replace") if r.key else None,
                   {k: v.decode(errors="replace") for k, v in r.headers}, r.value or b"")

    def envelope(self) -> dict[str, Any] | None:
        try:
            value = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


async def read_records(consumer: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]], *,
                       limit: int, deadline_s: float) -> list[ConsumerRecord[Any, Any]]:
    """Records with offsets in ``[start, end)`` of each partition, at most ``limit`` (in read order)."""
    todo = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    if not todo:
        return []
    consumer.assign(list(todo))
    for tp, (start, _) in todo.items():
        consumer.seek(tp, start)
    out: list[ConsumerRecord[Any, Any]] = []
    until = time.monotonic() + deadline_s
    try:
        while todo and len(out) < limit and time.monotonic() < until:
            batch = await consumer.getmany(*todo, timeout_ms=200, max_records=min(limit - len(out), 2000))
            for tp, records in batch.items():
                end = todo[tp][1] if tp in todo else 0
                for r in records:
                    if r.offset < end:
                        out.append(r)
                if records and records[-1].offset >= end - 1:
                    todo.pop(tp, None)
            for tp in list(todo):  # a partition whose range ends in a gap (compaction, transactions)
                if await consumer.position(tp) >= todo[tp][1]:
                    todo.pop(tp)
    finally:
        consumer.assign([])
    return out[:limit]


async def newest_in_window(consumer: AIOKafkaConsumer, topics: list[str], partitions: dict[str, list[int]], *,
                           since_ms: int, until_ms: int | None, scan_per_partition: int,
                           deadline_s: float) -> tuple[list[ConsumerRecord[Any, Any]], bool]:
    """The records of ``topics`` with a timestamp in ``[since_ms, until_ms)``: the newest
    ``scan_per_partition`` of each partition's window. Returns (records, whether some were left unread)."""
    tps = [TopicPartition(t, p) for t in topics for p in partitions.get(t, ())]
    if not tps:
        return [], False
    ends = await consumer.end_offsets(tps)
    starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    stops = await consumer.offsets_for_times({tp: until_ms for tp in tps}) if until_ms is not None else {}
    ranges: dict[TopicPartition, tuple[int, int]] = {}
    cut = False
    for tp in tps:
        first = starts.get(tp)
        start = first.offset if first is not None else ends[tp]
        stop_at = stops.get(tp)
        end = stop_at.offset if stop_at is not None else ends[tp]
        if end - start > scan_per_partition:
            start, cut = end - scan_per_partition, True
        ranges[tp] = (start, end)
    records = await read_records(consumer, ranges, limit=scan_per_partition * len(tps), deadline_s=deadline_s)
    return records, cut


async def read_one(consumer: AIOKafkaConsumer, topic: str, partition: int, offset: int) -> KafkaEvent | None:
    """The record at ``topic``/``partition``/``offset``, or None when it is not (or no longer) there."""
    tp = TopicPartition(topic, partition)
    if tp.partition not in (consumer.partitions_for_topic(topic) or ()):
        await consumer.topics()  # refreshes the metadata: a topic this consumer has not seen yet
        if tp.partition not in (consumer.partitions_for_topic(topic) or ()):
            return None
    first, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
    if not first <= offset < end:
        return None
    records = await read_records(consumer, {tp: (offset, offset + 1)}, limit=1, deadline_s=3.0)
    return KafkaEvent.of(records[0]) if records and records[0].offset == offset else None
