"""Kafka as the console sees it, through ``plumbing.kafka_clients`` (an admin client and a consumer
without a group): reachability, each event topic's end offsets over time (events per minute), each
worker group's lag, the DLQ's size and newest reason.

``KafkaWatch.sample()`` runs every few seconds in the background; pages read the result and never
wait on Kafka for the Overview. Clients that fail are closed and made again on the next sample, so
the console recovers by itself when the broker comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from consumers.replay.kafka_meta import GroupInfo, describe_group, topic_partitions
from plumbing.kafka_clients import make_admin, make_consumer
from plumbing.settings import KafkaSettings
from schemas.dlq import DLQ_AT_MS, DLQ_ERROR, DLQ_ERROR_TYPE, DLQ_WORKER
from schemas.event_types import EventType
from schemas.topics import dlq_topic, topic_for

__all__ = ["GroupLag", "KafkaSnapshot", "KafkaWatch", "DeadLetterNote"]

_KEEP_S = 900.0


@dataclass(slots=True)
class GroupLag:
    group: str
    state: str
    members: int
    lag: int  # records behind the end, summed over the group's partitions
    partitions: int


@dataclass(slots=True)
class DeadLetterNote:
    reason: str
    error_type: str
    worker: str
    at_ms: int | None
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class KafkaSnapshot:
    at: float
    reachable: bool
    error: str | None = None
    ends: dict[str, int] = field(default_factory=dict)  # event topic -> sum of end offsets
    groups: list[GroupLag] = field(default_factory=list)
    dlq_records: int = 0
    dlq_newest: DeadLetterNote | None = None


class KafkaWatch:
    def __init__(self, settings: KafkaSettings, groups: list[str]) -> None:
        self.settings = settings
        self.groups = groups
        self.event_topics = {topic_for(t.value, settings.topic_prefix): t.value for t in EventType}
        self.dlq = dlq_topic(settings.topic_prefix)
        self.history: deque[KafkaSnapshot] = deque()
        self.unreachable_since: float | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq_end: int | None = None
        self._dlq_newest: DeadLetterNote | None = None
        self.lock = asyncio.Lock()  # one user of the consumer at a time (sampling, page reads)

    async def clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = make_admin(self.settings, request_timeout_ms=5000)
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = make_consumer(self.settings, group_id=None, role="console", request_timeout_ms=5000,
                                     enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        for closing in ((admin.close() if admin else None), (consumer.stop() if consumer else None)):
            if closing is not None:
                try:
                    await asyncio.wait_for(closing, 5)
                except Exception:  # a client of a dead broker may fail to close: it is dropped anyway
                    pass

    async def sample(self, timeout_s: float) -> KafkaSnapshot:
        now = time.time()
        try:
            async with self.lock:
                snap = await asyncio.wait_for(self._sample(now), timeout_s)
            self.unreachable_since = None
        except Exception as exc:
            await self.close()
            if self.unreachable_since is None:
                self.unreachable_since = now
            reason = str(exc) or type(exc).__name__
            snap = KafkaSnapshot(now, False, f"{type(exc).__name__}: {reason}"[:300])
        self.history.append(snap)
        while self.history and self.history[0].at < now - _KEEP_S:
            self.history.popleft()
        return snap

    async def _sample(self, now: float) -> KafkaSnapshot:
        admin, consumer = await self.clients()
        parts = await topic_partitions(admin)
        tps = [TopicPartition(t, p) for t in (*self.event_topics, self.dlq) for p in parts.get(t, ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        by_topic: dict[str, int] = {}
        for tp, off in ends.items():
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + off
        groups = [await self._group(admin, consumer, g, parts) for g in self.groups]
        dlq_tps = [tp for tp in tps if tp.topic == self.dlq]
        dlq_records = 0
        if dlq_tps:
            begins = await consumer.beginning_offsets(dlq_tps)
            dlq_records = sum(max(ends[tp] - begins[tp], 0) for tp in dlq_tps)
            dlq_end = sum(ends[tp] for tp in dlq_tps)
            if dlq_end != self._dlq_end:  # something new in the DLQ: read its newest record's reason
                self._dlq_newest = await self._newest_dead_letter(consumer, {tp: ends[tp] for tp in dlq_tps})
                self._dlq_end = dlq_end
        return KafkaSnapshot(now, True, None, {t: n for t, n in by_topic.items() if t != self.dlq}, groups,
                             dlq_records, self._dlq_newest)

    async def _group(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str,
                     parts: dict[str, list[int]]) -> GroupLag:
        info: GroupInfo = await describe_group(admin, group)
        committed = await admin.list_consumer_group_offsets(group)
        owned = [tp for tp in committed if tp.topic in parts]
        ends = await consumer.end_offsets(owned) if owned else {}
        lag = sum(max(ends[tp] - committed[tp].offset, 0) for tp in owned if committed[tp].offset >= 0)
        return GroupLag(group, info.state, len(info.members), lag, len(owned))

    async def _newest_dead_letter(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> DeadLetterNote | None:
        from tpipe.console.kafka_records import read_records

        last = {tp: (max(end - 1, 0), end) for tp, end in ends.items() if end > 0}
        records = await read_records(consumer, last, limit=len(last), deadline_s=3.0)
        if not records:
            return None
        rec = max(records, key=lambda r: r.timestamp)
        headers = {k: v.decode(errors="replace") for k, v in rec.headers}
        at = headers.get(DLQ_AT_MS)
        return DeadLetterNote(headers.get(DLQ_ERROR, "(no reason header)"), headers.get(DLQ_ERROR_TYPE, ""),
                              headers.get(DLQ_WORKER, ""), int(at) if at and at.isdigit() else None,
                              rec.topic, rec.partition, rec.offset)

    def latest(self) -> KafkaSnapshot | None:
        return self.history[-1] if self.history else None

    def per_minute(self, window_s: float = 60.0) -> dict[str, float]:
        """Events per minute per type, from the growth of each topic's end offsets over ``window_s``."""
        ok = [s for s in self.history if s.reachable]
        if len(ok) < 2:
            return {}
        last = ok[-1]
        base = next((s for s in ok if s.at >= last.at - window_s), ok[0])
        span = last.at - base.at
        if span <= 0:
            return {}
        out: dict[str, float] = {}
        for topic, end in last.ends.items():
            grew = end - base.ends.get(topic, end)
            if grew > 0:
                out[self.event_topics[topic]] = grew * 60.0 / span
        return out

    def describe(self) -> dict[str, Any]:
        return {"bootstrap": self.settings.kafka, "prefix": self.settings.topic_prefix}
