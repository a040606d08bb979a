"""Helpers for tests that talk to a real Kafka broker (the broker itself comes from conftest fixtures).

    records = await read_all(kafka_settings, topic, expected_count=10)
    records = await read_until_quiet(kafka_settings, topic, quiet_s=1.0)
    await produce(kafka_settings, topic, [b"a", (b"key", b"value")])
    await produce_envelopes(kafka_settings, envelopes)   # as the forwarder publishes them

All clients come from ``plumbing.kafka_clients`` so the settings' security options apply. Reads use no
consumer group (manual assignment of every partition, from the beginning) and poll until a condition
holds or a deadline passes: no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from plumbing.kafka_clients import ensure_topics, make_admin, make_consumer, make_producer
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.topics import headers_for, key_for, topic_for
from tests.support.waiting import wait_until


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


@contextlib.asynccontextmanager
async def _reading(
    settings: KafkaSettings, topic: str, deadline: float, overrides: dict[str, Any]
) -> AsyncIterator[AIOKafkaConsumer | None]:
    """A started reader of every partition of ``topic`` from the beginning; None when the topic did
    not show up before ``deadline``."""
    consumer = _consumer(settings, overrides)
    await consumer.start()
    try:
        yield consumer if await _assign_all(consumer, topic, deadline) else None
    finally:
        await consumer.stop()


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
    out: list[ConsumerRecord] = []
    async with _reading(settings, topic, deadline, consumer_overrides) as consumer:
        while consumer is not None and len(out) < expected_count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for recs in batch.values():
                out.extend(recs)
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
    out: list[ConsumerRecord] = []
    async with _reading(settings, topic, deadline, consumer_overrides) as consumer:
        last_new = time.monotonic()
        while consumer is not None:
            now = time.monotonic()
            if now > deadline or (len(out) >= min_count and now - last_new >= quiet_s):
                break
            batch = await consumer.getmany(timeout_ms=200)
            if any(batch.values()):
                for recs in batch.values():
                    out.extend(recs)
                last_new = time.monotonic()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


async def produce(
    settings: KafkaSettings,
    topic: str,
    records: Iterable[bytes | tuple[bytes | None, bytes]],
    **producer_overrides: Any,
) -> int:
    """Send values (or ``(key, value)`` pairs) with tpipe's durable producer and wait for all acks."""
    pairs = [rec if isinstance(rec, tuple) else (None, rec) for rec in records]
    return await _send_all(settings, [(topic, {"value": v, "key": k}) for k, v in pairs], **producer_overrides)


async def produce_envelopes(settings: KafkaSettings, envs: Iterable[Envelope]) -> int:
    """Publish envelopes as the forwarder does: their topics created as tpipe creates them, then each on
    ``topic_for`` with ``key_for``, ``headers_for``, value ``to_json()`` and timestamp ``created_at_ms``."""
    envs = list(envs)
    await ensure_topics(settings, sorted({topic_for(e.type, settings.topic_prefix) for e in envs}))
    return await _send_all(settings, [
        (topic_for(e.type, settings.topic_prefix),
         {"value": e.to_json(), "key": key_for(e), "headers": headers_for(e), "timestamp_ms": e.created_at_ms})
        for e in envs
    ])


async def _send_all(settings: KafkaSettings, sends: list[tuple[str, dict[str, Any]]], **overrides: Any) -> int:
    producer = make_producer(settings, role="test-producer", **overrides)
    await producer.start()
    try:
        futs = [await producer.send(topic, **fields) for topic, fields in sends]
        await producer.flush()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return len(sends)


async def committed_offsets(settings: KafkaSettings, group: str) -> dict[TopicPartition, int]:
    """The offsets ``group`` has committed (partitions without a commit left out)."""
    admin = make_admin(settings)
    await admin.start()
    try:
        res = await admin.list_consumer_group_offsets(group)
        return {tp: om.offset for tp, om in res.items() if om.offset >= 0}
    finally:
        await admin.close()


async def end_offsets(settings: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topic`` (waits for the topic to be in the metadata)."""
    c = make_consumer(settings, group_id=None, role="test-ends", metadata_max_age_ms=500)
    await c.start()
    try:
        async def parts_known() -> Any:
            await c.topics()  # refreshes metadata
            return c.partitions_for_topic(topic)

        parts = await wait_until(parts_known, f"metadata of {topic}")
        return dict(await c.end_offsets([TopicPartition(topic, p) for p in parts]))
    finally:
        await c.stop()


async def create_topic(settings: KafkaSettings, name: str, configs: dict[str, str], partitions: int = 3) -> None:
    """Create ``name`` with ``configs`` (as an operator would before tpipe starts: tpipe then leaves it as is)."""
    from aiokafka.admin import NewTopic

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
