"""``--durability broker``: the request path parses, builds and publishes; 202 after Kafka's ack.

Records Kafka refuses for good are settled the same way as in the forwarder (``ingest.forward.delivery``):
stamped with the receive time, or dead-lettered, so one bad event neither fails its request again
and again nor breaks the producer's sequence for the requests that share its partition.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.forward.delivery import Delivery, wait_done
from ingest.forward.forwarder import producer_factory
from ingest.forward.health import apply_tally
from ingest.forward.publisher import outcomes, submit
from ingest.records import KafkaRecord, RecordBuilder
from ingest.settings import IngestSettings
from plumbing import metrics
from schemas.envelope import Envelope


class DirectPublisher:
    def __init__(self, settings: IngestSettings, builder: RecordBuilder) -> None:
        self.settings = settings
        self.builder = builder
        self.delivery = Delivery(producer_factory(settings, builder), builder)
        self._never = asyncio.Event()  # deliveries end by the request's timeout, not by a stop
        self._counters: dict[str, tuple[Any, Any]] = {}

    @property
    def up(self) -> bool:
        return self.delivery.current is not None

    async def start(self) -> None:
        await self.delivery.producer()

    async def close(self) -> None:
        await asyncio.wait_for(self.delivery.close(), timeout=5.0)

    def records(self, envelopes: list[Envelope]) -> tuple[list[KafkaRecord], list[dict[str, str]]]:
        """The records of one request, and what its 202 lists (event_id, type, topic per event)."""
        records: list[KafkaRecord] = []
        accepted: list[dict[str, str]] = []
        record, counters = self.builder.record, self._counters
        for env in envelopes:
            rec, errors = record(env)
            records.append(rec)
            accepted.append({"event_id": env.event_id, "type": env.type, "topic": rec.topic})
            pair = counters.get(env.type)
            if pair is None:  # metric children resolved once per type, not per event
                pair = counters[env.type] = (metrics.EVENTS_ACCEPTED.labels(env.type),
                                             metrics.EVENTS_INVALID.labels(env.type))
            pair[0].inc()
            if errors:
                pair[1].inc()
        return records, accepted

    async def publish(self, records: list[KafkaRecord]) -> None:
        """Every record in Kafka (its topic or the DLQ) within ``--broker-timeout-s``, or raises."""
        await asyncio.wait_for(self._publish(records), timeout=self.settings.broker_timeout_s)

    async def _publish(self, records: list[KafkaRecord]) -> None:
        parts = await submit(await self.delivery.producer(), records, batch_bytes=self.builder.batch_bytes)
        await wait_done([p.future for p in parts], self._never)
        refused = [r for r, e in zip(records, outcomes(parts, len(records)), strict=True) if e is not None]
        if refused:
            await self.delivery.deliver(refused, self._never)
        if self.builder.tally:
            apply_tally(self.builder.tally)
            self.builder.tally.clear()
