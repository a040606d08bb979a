"""``tpipe topics create|list``: the contract's topics, their partitions, replication, retention and size."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from consumers.replay.kafka_meta import topic_partitions
from consumers.replay.selection import ReplayError
from plumbing.kafka_clients import ensure_topics, make_admin, make_consumer, topic_replication
from plumbing.settings import KafkaSettings
from schemas.times import parse_duration_ms
from schemas.topics import all_topics

__all__ = ["TopicInfo", "create_topics", "format_retention", "list_topics", "parse_retention_ms"]

_INFINITE = {"infinite", "forever", "unlimited", "never", "-1"}


def parse_retention_ms(text: str) -> int:
    """``30d``, ``12h``, ``1w`` ... -> ms; ``infinite`` / ``forever`` / ``-1`` -> -1 (keep forever)."""
    s = text.strip().lower()
    if s in _INFINITE:
        return -1
    if s.isdigit():
        raise ReplayError(f"retention {text!r} needs a unit (e.g. 30d, 12h) or 'infinite'")
    try:
        ms = parse_duration_ms(s)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    if ms <= 0:
        raise ReplayError("retention must be positive, or 'infinite'")
    return ms


def format_retention(ms: int | None) -> str:
    if ms is None:
        return "?"
    if ms < 0:
        return "infinite"
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(slots=True)
class TopicInfo:
    name: str
    exists: bool
    partitions: int = 0
    replication: int = 0  # replicas of its first partition
    min_insync: str | None = None  # its min.insync.replicas (the broker's default when not set on it)
    retention_ms: int | None = None
    records: int = 0  # end - beginning offsets, summed over partitions


async def create_topics(
    settings: KafkaSettings,
    *,
    retention_ms: int | None = None,
    partitions: int | None = None,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
) -> tuple[list[str], list[str], tuple[int, int]]:
    """Create the contract's missing topics; returns (created, already there, (replication factor,
    min.insync.replicas) of the created ones)."""
    update: dict[str, object] = {}
    if retention_ms is not None:
        update["topic_retention_ms"] = retention_ms
    if partitions is not None:
        update["topic_partitions"] = partitions
    if replication_factor is not None:
        update["topic_replication_factor"] = replication_factor
    if min_insync_replicas is not None:
        update["topic_min_insync_replicas"] = min_insync_replicas
    s = settings.model_copy(update=update) if update else settings
    admin = make_admin(s)
    await admin.start()
    try:
        rf, min_insync = await topic_replication(s, admin)
    finally:
        await admin.close()
    s = s.model_copy(update={"topic_replication_factor": rf, "topic_min_insync_replicas": min_insync})
    names = all_topics(s.topic_prefix)
    created = await ensure_topics(s, names, partitions=partitions, strict=True)
    return created, [n for n in names if n not in created], (rf, min_insync)


async def list_topics(settings: KafkaSettings) -> list[TopicInfo]:
    """The contract's topics with partition count, retention.ms and record count."""
    names = all_topics(settings.topic_prefix)
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = await topic_partitions(admin)
        present = [n for n in names if n in existing]
        replicas = {t["topic"]: len(t["partitions"][0]["replicas"]) for t in await admin.describe_topics()
                    if t["topic"] in present and t.get("error_code", 0) == 0 and t.get("partitions")}
        retention: dict[str, int | None] = {}
        min_insync: dict[str, str] = {}
        if present:
            resources = [ConfigResource(ConfigResourceType.TOPIC, n, {"retention.ms": None, "min.insync.replicas": None})
                         for n in present]
            for resp in await admin.describe_configs(resources):
                for res in resp.resources:
                    name, entries = res[3], res[4]
                    for entry in entries:
                        if entry[0] == "retention.ms" and entry[1] is not None:
                            retention[name] = int(entry[1])
                        elif entry[0] == "min.insync.replicas" and entry[1] is not None:
                            min_insync[name] = entry[1]
    finally:
        await admin.close()
    counts: dict[str, int] = {}
    if present:
        tps = [TopicPartition(n, p) for n in present for p in existing[n]]
        consumer = make_consumer(settings, group_id=None, role="topics")
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
            begins = await consumer.beginning_offsets(tps)
        finally:
            await consumer.stop()
        for tp in tps:
            counts[tp.topic] = counts.get(tp.topic, 0) + max(ends[tp] - begins[tp], 0)
    return [
        TopicInfo(n, n in existing, len(existing.get(n, ())), replicas.get(n, 0), min_insync.get(n),
                  retention.get(n), counts.get(n, 0))
        if n in existing
        else TopicInfo(n, False)
        for n in names
    ]
