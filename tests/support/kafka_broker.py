"""Helpers for tests that talk to a real Kafka broker (the broker itself comes from conftest fixtures).

    records = await read_all(kafka_settings, topic, expected_count=10)
    records = await read_until_quiet(kafka_settings, topic, quiet_s=1.0)
    await produce(kafka_settings, topic, [b"a", (b"key", b"value")])

All clients come from ``plumbing.kafka_clients`` so the settings' security options apply. Reads use no
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

from plumbing.kafka_clients import make_consumer, make_producer
from plumbing.settings import KafkaSettings


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


async def create_topic(settings: KafkaSettings, name: str, configs: dict[str, str], partitions: int = 3) -> None:
    """Create ``name`` with ``configs`` (as an operator would before tpipe starts: tpipe then leaves it as is)."""
    from aiokafka.admin import NewTopic

    from plumbing.kafka_clients import make_admin

    admin = make_admin(settings)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
        errors = [e for e in resp.topic_errors if e[1]]
        assert not errors, f"create_topics {name}: {errors}"
    finally:
        await admin.close()


async def alter_topic(settings: KafkaSettings, name: str, configs: dict[str, str]) -> None:
    """Change topic configs (incrementally: the others keep their values)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from plumbing.kafka_clients import make_admin

    admin = make_admin(settings)
    await admin.start()
    try:
        current = {}
        for resp in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)]):
            for res in resp.resources:
                for entry in res[4]:
                    # only values set on the topic itself: AlterConfigs replaces the whole set
                    if entry[1] is not None and len(entry) > 3 and entry[3] in (1, False):
                        current[entry[0]] = entry[1]
        current.update(configs)
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, current)])
    finally:
        await admin.close()


#: server properties for a broker that enforces ACLs but allows everything no ACL mentions
ACL_BROKER_OVERRIDES = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
}
_TOPIC, _LITERAL, _WRITE, _DENY = 2, 3, 4, 2  # Kafka's ResourceType, PatternType, AclOperation, AclPermissionType


async def _acl_request(settings: KafkaSettings, request: Any) -> Any:
    from plumbing.kafka_clients import make_admin

    admin = make_admin(settings)
    await admin.start()
    try:
        client = admin._client
        return await client.send(client.get_random_node(), request)
    finally:
        await admin.close()


async def deny_writes(settings: KafkaSettings, topic: str, principal: str = "User:ANONYMOUS") -> None:
    """A DENY WRITE ACL on ``topic`` (the broker answers TOPIC_AUTHORIZATION_FAILED to producers)."""
    from aiokafka.protocol.admin import CreateAclsRequest

    resp = await _acl_request(settings, CreateAclsRequest(_TOPIC, topic, _LITERAL, principal, "*", _WRITE, _DENY))
    errors = [r for r in resp.creation_responses if r[0]]
    assert not errors, f"CreateAcls: {errors}"


async def allow_writes_again(settings: KafkaSettings, topic: str, principal: str = "User:ANONYMOUS") -> None:
    """Remove the ACL ``deny_writes`` added."""
    from aiokafka.protocol.admin import DeleteAclsRequest

    resp = await _acl_request(settings, DeleteAclsRequest(_TOPIC, topic, _LITERAL, principal, "*", _WRITE, _DENY))
    errors = [r for r in resp.filter_responses if r[0]]
    assert not errors and resp.filter_responses[0][2], f"DeleteAcls: {resp.filter_responses}"


class TopicTail:
    """A consumer positioned at the end of a topic before something is sent: ``await tail.first(pred)``
    returns the first new record matching ``pred`` and the seconds it took since ``start()``."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._consumer = _consumer(settings, {})
        self._t0 = 0.0

    async def __aenter__(self) -> TopicTail:
        await self._consumer.start()
        tps = await _assign_all(self._consumer, self.topic, time.monotonic() + 30)
        assert tps, f"topic {self.topic} does not exist"
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end positions now, not at the first fetch
            await self._consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    def start(self) -> None:
        self._t0 = time.monotonic()

    async def first(self, pred: Any, timeout: float = 30.0) -> tuple[ConsumerRecord, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=100)
            for recs in batch.values():
                for r in recs:
                    if pred(r):
                        return r, round(time.monotonic() - self._t0, 3)
        raise AssertionError(f"no matching record in {self.topic} within {timeout}s")
