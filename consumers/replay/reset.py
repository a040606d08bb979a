"""``tpipe consumers reset``: move a stopped worker's consumer group to a point in time.

Like ``kafka-consumer-groups --reset-offsets --to-datetime``: per partition the new offset is the
first record with timestamp >= T (the end offset when there is none); a dry run (the plan) unless
``execute``. It refuses while the group has members, and refuses the lake (telemetry) worker's
group, whose position is stored in the Iceberg table snapshots, not in Kafka.

The commit is made by a consumer that joins no group (manual assignment, generation -1), which
the group coordinator accepts only while the group is empty: a worker that starts between the
check and the commit makes the commit fail instead of being overridden.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from consumers.replay.kafka_meta import GroupInfo, describe_group, retrying, topic_partitions
from consumers.replay.selection import ReplayError
from plumbing.kafka_clients import make_admin, make_consumer
from plumbing.settings import KafkaSettings
from schemas.times import format_ms

__all__ = ["LAKE_WORKER", "ResetRow", "lake_refusal", "plan_reset", "plan_rows", "plan_title", "reset_group"]

#: The worker whose position lives in the lake, not in Kafka (consumers.lake: group ``<prefix>.telemetry``).
LAKE_WORKER = "telemetry"


@dataclass(slots=True)
class ResetRow:
    topic: str
    partition: int
    current: int | None  # committed offset (None: nothing committed)
    new: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


def lake_refusal(group: str, prefix: str) -> str | None:
    """Why resetting ``group`` would be wrong, or None when it may be reset."""
    if group != f"{prefix}.{LAKE_WORKER}":
        return None
    return (
        f"{group} is the lake (telemetry) worker's group. That worker stores its Kafka position in the "
        "Iceberg table snapshot properties and seeks there on start, so moving the group's committed "
        "offsets would have no effect.\n"
        "To get history back in front of a consumer instead:\n"
        "  - read it from the lake:   tpipe lake replay --from T1 --to T2 --to-file out.jsonl (or --to-topic/--to-url)\n"
        "  - or re-ingest from Kafka: tpipe replay --from T1 --to T2 --to-url http://<receiver>/webhook "
        "(event ids are the same, so consumers that already have an event skip it)\n"
        "See docs/replay.md."
    )


async def plan_reset(
    settings: KafkaSettings, group: str, to_ms: int | str, topics: list[str] | None = None
) -> tuple[GroupInfo, list[ResetRow]]:
    """The group's state and, per partition, its committed offset and the offset for ``to_ms``.

    ``to_ms`` is epoch ms, ``"earliest"`` or ``"latest"``. Partitions: those of ``topics``, or every
    partition the group has committed offsets for.
    """
    admin = make_admin(settings)
    await admin.start()
    try:
        info = await retrying(lambda: describe_group(admin, group))
        committed = await retrying(lambda: admin.list_consumer_group_offsets(group))
        existing = await topic_partitions(admin)
    finally:
        await admin.close()
    if topics:
        unknown = [t for t in topics if t not in existing]
        if unknown:
            raise ReplayError(f"no such topic: {', '.join(unknown)}")
        tps = [TopicPartition(t, p) for t in topics for p in existing[t]]
    else:
        tps = sorted((tp for tp in committed if tp.topic in existing), key=lambda tp: (tp.topic, tp.partition))
        if not tps:
            raise ReplayError(f"group {group} has no committed offsets: name the topics with --topic")
    consumer = make_consumer(settings, group_id=None, role="reset")
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        if to_ms == "latest":
            new = ends
        elif to_ms == "earliest":
            new = await consumer.beginning_offsets(tps)
        else:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, int(to_ms)))
            new = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
    finally:
        await consumer.stop()
    rows = []
    for tp in tps:
        meta = committed.get(tp)
        current = meta.offset if meta is not None and meta.offset >= 0 else None
        rows.append(ResetRow(tp.topic, tp.partition, current, new[tp]))
    return info, rows


def plan_rows(rows: list[ResetRow]) -> list[dict[str, object]]:
    """The plan as rows (``current_offset`` None: the group had no offset there)."""
    return [{"topic": r.topic, "partition": r.partition, "current_offset": r.current, "new_offset": r.new}
            for r in rows]


def plan_title(group: str, to_label: str, *, executed: bool) -> str:
    return f"{'RESET' if executed else 'DRY RUN (add --execute to apply)'}: group {group} to {to_label}"


async def reset_group(
    settings: KafkaSettings,
    group: str,
    to_ms: int | str,
    *,
    topics: list[str] | None = None,
    execute: bool = False,
) -> list[ResetRow]:
    """Plan (and with ``execute`` apply) the reset; raises ReplayError when it must refuse."""
    why = lake_refusal(group, settings.topic_prefix)
    if why:
        raise ReplayError(why)
    info, rows = await plan_reset(settings, group, to_ms, topics)
    if not info.inactive:
        members = "; ".join(info.members) or "none listed"
        raise ReplayError(
            f"group {group} is active (state {info.state}, members: {members}). Stop its worker(s) first; "
            "offsets can only be moved while the group is empty."
        )
    if not execute:
        return rows
    consumer = make_consumer(settings, group_id=group, role="reset")
    await consumer.start()
    try:
        consumer.assign([r.tp for r in rows])
        await consumer.commit({r.tp: OffsetAndMetadata(r.new, f"tpipe reset to {_label(to_ms)}") for r in rows})
    except (CommitFailedError, KafkaError) as exc:
        raise ReplayError(f"the coordinator refused the new offsets for {group} (did a worker start?): {exc}") from exc
    finally:
        await consumer.stop()
    return rows


def _label(to_ms: int | str) -> str:
    return to_ms if isinstance(to_ms, str) else format_ms(to_ms)
