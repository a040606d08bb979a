"""What the cluster tests ask of the 3-node cluster: which node leads the busiest partition, when a
partition has a new leader, the end offsets of topics and the committed offsets of a group."""

from __future__ import annotations

import asyncio
import time

from aiokafka.structs import TopicPartition

from localbroker.replicas import partition_states
from plumbing.kafka_clients import make_admin, make_consumer
from plumbing.settings import KafkaSettings


async def end_offsets(settings: KafkaSettings, topics: list[str]) -> dict[TopicPartition, int]:
    """Every partition's end offset (partitions of topics that do not exist are left out)."""
    states = await partition_states(settings, topics)
    tps = [TopicPartition(p.topic, p.partition) for p in states]
    if not tps:
        return {}
    consumer = make_consumer(settings, group_id=None, role="test-offsets")
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def committed_offsets(settings: KafkaSettings, group: str) -> dict[TopicPartition, int]:
    """The offsets ``group`` committed to Kafka."""
    admin = make_admin(settings)
    await admin.start()
    try:
        out = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in out.items() if meta.offset >= 0}


async def busiest_leader(settings: KafkaSettings, topic: str) -> tuple[int, int, dict[int, int]]:
    """(leader node id, partition) of the partition of ``topic`` holding the most records so far,
    and the records per partition; (-1, -1, ...) while the topic or its leaders are not known yet."""
    states = {p.partition: p for p in await partition_states(settings, [topic])}
    ends = {tp.partition: off for tp, off in (await end_offsets(settings, [topic])).items()}
    if not ends or set(ends) - set(states):
        return -1, -1, ends
    partition = max(ends, key=lambda p: (ends[p], -p))
    return states[partition].leader, partition, ends


async def leader_moved(settings: KafkaSettings, topic: str, partition: int, old: int, timeout_s: float = 60.0) -> float:
    """Seconds until ``partition`` of ``topic`` has a leader other than ``old``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            states = await partition_states(settings, [topic])
        except Exception:  # the metadata request hit the dead node: ask again
            states = []
        leader = next((p.leader for p in states if p.partition == partition), old)
        if leader not in (old, -1):
            return round(time.monotonic() - t0, 2)
        await asyncio.sleep(0.1)  # metadata poll interval
    raise AssertionError(f"{topic}-{partition} still led by node {old} after {timeout_s}s")
