"""Reading a time window of history back out of the event topics.

Per partition: start at the offset for ``from - slack`` (``offsets_for_times``), stop at the end
offset captured when the replay starts, or earlier at the first record created after
``to + slack``: records of a partition are in arrival order, not event time, so the slack is how
late an event may arrive and still be found. Records are filtered by ``created_at_ms`` (the record
timestamp) and VIN. No consumer group is used (manual assignment, ``group_id=None``), nothing is
committed, and the read always ends.

Each ``event_id`` comes out once: a redelivered webhook is a second record with the same id in the
same partition, and the first record read wins (``consumers.replay.dedup``: a per-partition seen-set
bounded by a receive-time horizon). ``PartitionRange.matched`` counts distinct events, ``duplicates``
the later copies left out.

Output order: partitions are merged by record timestamp, each partition in offset order, so one
VIN's events (one partition per topic) keep their order, and across topics come out by event time.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.structs import TopicPartition

from consumers.replay.dedup import SeenIds
from consumers.replay.kafka_meta import topic_partitions
from consumers.replay.progress import Progress
from consumers.replay.selection import ReplayEvent, Selection
from plumbing.kafka_clients import make_admin, make_consumer
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope, EnvelopeError
from schemas.times import iso_to_ms

__all__ = ["KafkaSource", "PartitionRange"]

log = logging.getLogger(__name__)

_CREATE_TIME = 0


@dataclass(slots=True)
class PartitionRange:
    """The offsets ``[start, end)`` a replay reads in one partition, and what it found there."""

    topic: str
    partition: int
    start: int
    end: int
    scanned: int = 0  # records read
    matched: int = 0  # distinct events in the selection (what a replay sends)
    duplicates: int = 0  # later copies of an event already matched (redeliveries), left out
    invalid: int = 0  # values that are not envelopes (skipped)
    stopped_at: int | None = None  # offset where reading stopped (past the window), if before end

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def size(self) -> int:
        return max(self.end - self.start, 0)


@dataclass(slots=True)
class _Lane:
    rng: PartitionRange
    seen: SeenIds
    buf: deque[tuple[int, ReplayEvent]] = field(default_factory=deque)
    done: bool = False


class KafkaSource:
    """``async with KafkaSource(settings, sel) as src: ranges = await src.plan(); async for ev in src.events()``."""

    def __init__(self, settings: KafkaSettings, selection: Selection) -> None:
        self.settings = settings
        self.sel = selection
        self.topic_types = selection.topics(settings.topic_prefix)
        self.missing_topics: list[str] = []
        self.ranges: list[PartitionRange] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> KafkaSource:
        # group_id=None: no group, no commits; the workers' groups are never touched.
        consumer = make_consumer(self.settings, group_id=None, role="replay", max_poll_records=1000)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "use `async with KafkaSource(...)`"
        return self._consumer

    async def plan(self) -> list[PartitionRange]:
        """Resolve the offset ranges (and capture the end offsets) for every selected partition."""
        c = self.consumer
        admin = make_admin(self.settings)
        await admin.start()
        try:
            existing = await topic_partitions(admin)
        finally:
            await admin.close()
        tps: list[TopicPartition] = []
        self.missing_topics = []
        for topic in self.topic_types:
            parts = existing.get(topic)
            if not parts:
                self.missing_topics.append(topic)
                continue
            tps.extend(TopicPartition(topic, p) for p in parts)
        if not tps:
            self.ranges = []
            return []
        ends: dict[TopicPartition, int] = await c.end_offsets(tps)
        if self.sel.from_ms is None:
            starts: dict[TopicPartition, int] = await c.beginning_offsets(tps)
        else:
            ts = max(self.sel.from_ms - self.sel.slack_ms, 0)
            found = await c.offsets_for_times(dict.fromkeys(tps, ts))
            starts = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
        self.ranges = [
            PartitionRange(tp.topic, tp.partition, min(starts[tp], ends[tp]), ends[tp]) for tp in tps
        ]
        return self.ranges

    def _event(self, rec: ConsumerRecord[Any, Any], lane: _Lane) -> ReplayEvent | None:
        """The record as a ReplayEvent if it is in the selection and the first copy of its event, else None."""
        rng = lane.rng
        headers = list(rec.headers or ())
        hdr = {k: v for k, v in headers}
        created_ms: int = rec.timestamp
        vin_b = hdr.get("vin")
        vin = vin_b.decode() if vin_b else (rec.key.decode(errors="replace") if rec.key else None)
        eid_b = hdr.get("event_id")
        event_id = eid_b.decode() if eid_b else None
        received_b = hdr.get("received_at")
        received_ms = iso_to_ms(received_b.decode()) if received_b else None
        if rec.timestamp_type != _CREATE_TIME or vin_b is None or eid_b is None:
            try:  # no trustworthy timestamp/headers: read the envelope itself
                env = Envelope.from_json(rec.value)
            except EnvelopeError:
                rng.invalid += 1
                return None
            created_ms, vin, event_id = env.created_at_ms, env.vin, env.event_id
            received_ms = env.received_at_ms
        if not self.sel.in_window(created_ms) or not self.sel.wants_vin(vin):
            return None
        if event_id is not None and not lane.seen.first(event_id, received_ms or created_ms):
            rng.duplicates += 1
            return None
        return ReplayEvent(
            type=self.topic_types[rng.topic], vin=vin, created_at_ms=created_ms, key=rec.key,
            value=rec.value, headers=headers, event_id=event_id,
        )

    async def events(self, progress: Progress | None = None) -> AsyncIterator[ReplayEvent]:
        """The selected events, in per-partition order, merged across partitions by timestamp."""
        c = self.consumer
        stop_ts = self.sel.to_ms + self.sel.slack_ms
        lanes = {r.tp: _Lane(r, SeenIds(self.sel.dedup_horizon_ms)) for r in self.ranges}
        for lane in lanes.values():
            if lane.rng.size == 0:
                lane.done = True
        live = [tp for tp, lane in lanes.items() if not lane.done]
        c.assign(live)
        for tp in live:
            c.seek(tp, lanes[tp].rng.start)

        def finish(lane: _Lane, at: int | None) -> None:
            lane.done = True
            c.pause(lane.rng.tp)
            if at is not None and at < lane.rng.end:
                lane.rng.stopped_at = at
            if progress is not None:  # what will not be read (past the window, gaps) counts as done
                progress.skip(lane.rng.size - lane.rng.scanned)

        while True:
            hungry = [tp for tp, lane in lanes.items() if not lane.done and not lane.buf]
            if hungry:
                batch = await c.getmany(*hungry, timeout_ms=500)
                for tp, recs in batch.items():
                    lane = lanes[tp]
                    n = 0
                    for rec in recs:
                        if rec.offset >= lane.rng.end:
                            finish(lane, None)
                            break
                        if rec.timestamp > stop_ts:
                            finish(lane, rec.offset)
                            break
                        lane.rng.scanned += 1
                        ev = self._event(rec, lane)
                        if ev is None:
                            n += 1  # done; a matching record counts as done when it goes out
                        else:
                            lane.rng.matched += 1
                            lane.buf.append((rec.timestamp, ev))
                    if progress is not None:
                        progress.scanned(n)
                for tp in hungry:
                    lane = lanes[tp]
                    if not lane.done and not lane.buf and await c.position(tp) >= lane.rng.end:
                        finish(lane, None)
                if any(not lane.done and not lane.buf for lane in lanes.values()):
                    continue  # someone still waits for data: cannot know the smallest head yet
            ready = [lane for lane in lanes.values() if lane.buf]
            if not ready:
                return
            # Emit while every unfinished lane has a buffered head (so the minimum is known).
            while ready and all(lane.buf or lane.done for lane in lanes.values()):
                best = min(ready, key=lambda ln: (ln.buf[0][0], ln.rng.topic, ln.rng.partition))
                if progress is not None:
                    progress.scanned()
                yield best.buf.popleft()[1]
                if not best.buf:
                    ready = [lane for lane in ready if lane.buf]
