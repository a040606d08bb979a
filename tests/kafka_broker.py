"""Helpers for tests that talk to a real Kafka broker (the broker itself comes from conftest fixtures).

    records = await read_all(kafka_settings, topic, expected_count=10)
    records = await read_until_quiet(kafka_settings, topic, quiet_s=1.0)
    await produce(kafka_settings, topic, [b"a", (b"key", b"value")])

All clients come from ``tpipe.kafka_clients`` so the settings' security options apply. Reads use no
consumer group (manual assignment of every partition, from the beginning) and poll until a condition
holds or a deadline passes: no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from tpipe.kafka_clients import make_consumer, make_producer
from tpipe.settings import KafkaSettings


def broker_settings(bootstrap: str, topic_prefix: str = "t", **fields: Any) -> KafkaSettings:
    """KafkaSettings for a test broker. Security is PLAINTEXT unless the broker came from
    ``KAFKA_BOOTSTRAP_SERVERS`` (then ``TPIPE_KAFKA_*`` environment variables may configure it)."""
    base: dict[str, Any] = {"kafka": bootstrap, "topic_prefix": topic_prefix, "topic_partitions": 3}
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        base.update(
            kafka_security_protocol="PLAINTEXT",
            kafka_sasl_mechanism=None,
            kafka_sasl_username=None,
            kafka_sasl_password=None,
        )
    base.update(fields)
    return KafkaSettings(**base)


async def _assign_all(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> list[TopicPartition]:
    """Wait until the topic exists in metadata, then assign all its partitions from the beginning."""
    while True:
        await consumer.topics()  # refreshes cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if parts:
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            return tps
        if time.monotonic() > deadline:
            return []
        await asyncio.sleep(0.1)  # metadata poll interval while the topic does not exist yet


def _consumer(settings: KafkaSettings, overrides: dict[str, Any]) -> AIOKafkaConsumer:
    cfg: dict[str, Any] = {"metadata_max_age_ms": 1000, "request_timeout_ms": 10_000}
    cfg.update(overrides)
    return make_consumer(settings, group_id=None, role="test-reader", **cfg)


async def read_all(
    settings: KafkaSettings,
    topic: str,
    expected_count: int,
    timeout: float = 30.0,
    **consumer_overrides: Any,
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning (all partitions, no group) until at least ``expected_count``
    records arrived or ``timeout`` seconds passed; returns what was read (callers assert the count).

    Defaults are tpipe's consumer config (``isolation_level=read_committed``); pass e.g.
    ``isolation_level="read_uncommitted"`` to override.
    """
    deadline = time.monotonic() + timeout
    consumer = _consumer(settings, consumer_overrides)
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        if not await _assign_all(consumer, topic, deadline):
            return out
        while len(out) < expected_count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for recs in batch.values():
                out.extend(recs)
    finally:
        await consumer.stop()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


async def read_until_quiet(
    settings: KafkaSettings,
    topic: str,
    quiet_s: float = 1.0,
    timeout: float = 30.0,
    *,
    min_count: int = 0,
    **consumer_overrides: Any,
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until at least ``min_count`` records arrived and then nothing new
    came for ``quiet_s`` seconds (or ``timeout`` passed). For asserting "exactly N, no duplicates"."""
    deadline = time.monotonic() + timeout
    consumer = _consumer(settings, consumer_overrides)
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        if not await _assign_all(consumer, topic, deadline):
            return out
        last_new = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline or (len(out) >= min_count and now - last_new >= quiet_s):
                break
            batch = await consumer.getmany(timeout_ms=200)
            n = sum(len(v) for v in batch.values())
            if n:
                for recs in batch.values():
                    out.extend(recs)
                last_new = time.monotonic()
    finally:
        await consumer.stop()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


async def produce(
    settings: KafkaSettings,
    topic: str,
    records: Iterable[bytes | tuple[bytes | None, bytes]],
    **producer_overrides: Any,
) -> int:
    """Send values (or ``(key, value)`` pairs) with tpipe's durable producer and wait for all acks."""
    producer = make_producer(settings, role="test-producer", **producer_overrides)
    await producer.start()
    n = 0
    try:
        futs = []
        for rec in records:
            key, value = rec if isinstance(rec, tuple) else (None, rec)
            futs.append(await producer.send(topic, value=value, key=key))
            n += 1
        await producer.flush()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return n
