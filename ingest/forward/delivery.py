"""Delivery of records Kafka refused: each ends in Kafka (its topic, or the DLQ with the reason),
in order, and the next goes on.

``Delivery`` owns the producer. After any refusal the producer is renewed before the next send:
aiokafka's idempotent producer numbers each partition's batches, and a batch the broker refused
leaves a gap that the broker answers with ``OutOfOrderSequenceNumber`` for every later batch of
that partition (a new producer id starts a new sequence). ``deliver`` then sends the refused
records again, together (behind a ``PartitionGate``, so nothing overtakes a refused batch); the
first one still refused is sent alone until its fate is settled (``ingest.forward.refusals.classify``:
received-time stamp, DLQ, new producer, or back off and retry), and the rest follow. Records Kafka
acknowledged are never sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from ingest.errors import StoppedError
from ingest.forward.publisher import PartitionGate, ProducerFactory, outcomes, submit
from ingest.forward.refusals import Disposition, classify, describe
from ingest.records import TIMESTAMP_SOURCE, KafkaRecord, RecordBuilder, with_received_time
from plumbing.retry import Backoff, pause

log = logging.getLogger("tpipe.forwarder")



class Delivery:
    def __init__(
        self,
        factory: ProducerFactory,
        builder: RecordBuilder,
        *,
        max_backoff_s: float = 5.0,
        on_error: Callable[[BaseException], None] | None = None,
        on_success: Callable[[], None] | None = None,
    ) -> None:
        self._factory = factory
        self.builder = builder
        self.max_backoff_s = max_backoff_s
        self._on_error = on_error
        self._on_success = on_success
        self._producer: AIOKafkaProducer | None = None
        self._stale = False  # renew before the next send
        self._lock = asyncio.Lock()

    @property
    def current(self) -> AIOKafkaProducer | None:
        return self._producer

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is not None and not self._stale:
            return self._producer
        async with self._lock:
            if self._stale and self._producer is not None:
                old, self._producer = self._producer, None
                await _stop(old)
            self._stale = False
            if self._producer is None:
                self._producer = await self._factory()
            return self._producer

    def renew(self) -> None:
        """The producer's sequence state may be broken: the next ``producer()`` starts a new one."""
        self._stale = True

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop(producer)

    # ---- the slow path -----------------------------------------------------------------------------
    async def deliver(self, records: list[KafkaRecord], stop: asyncio.Event) -> None:
        """Make every record of ``records`` (in order; none acknowledged yet) land in Kafka: its topic,
        its topic with the receive time as timestamp, or the DLQ. Retries what the cluster refuses
        for reasons of its own until ``stop`` is set (then raises ``StoppedError``).

        Kafka refuses a whole batch for one bad record, and does not say which: the refused records
        are split in halves, each sent on its own (the first half first), until the bad record is
        alone — a few rounds per bad record, not one per record. A refusal that is the cluster's
        (not the records') is not split: the first record waits for it, then the rest follow."""
        groups = [records]
        while groups:
            group = groups.pop(0)
            failed = await self._send_group(group, stop)
            if not failed:
                continue
            self.renew()
            first = failed[0][1]
            if len(failed) == 1 or classify(first) in (Disposition.RETRY, Disposition.PRODUCER):
                await self._settle(failed[0][0], stop)
                rest = [r for r, _ in failed[1:]]
                if rest:
                    groups.insert(0, rest)
                continue
            half = len(failed) // 2
            groups[0:0] = [[r for r, _ in failed[:half]], [r for r, _ in failed[half:]]]

    async def _send_group(self, group: list[KafkaRecord], stop: asyncio.Event) -> list[tuple[KafkaRecord, BaseException]]:
        """Send ``group`` (behind a fresh gate: nothing overtakes a refused batch); the records Kafka
        did not take, in order, with why."""
        self.renew()
        try:
            producer = await self.producer()
            parts = await submit(producer, group, PartitionGate(), self.builder.batch_bytes)
            await wait_done([p.future for p in parts], stop)
            results = outcomes(parts, len(group))
        except StoppedError:
            raise
        except Exception as exc:  # the producer could not even start: the first record waits
            results = [exc] * len(group)
        return [(r, e) for r, e in zip(group, results, strict=True) if e is not None]

    async def _settle(self, rec: KafkaRecord, stop: asyncio.Event) -> None:
        """Send ``rec`` alone until Kafka took it (maybe changed: received-time stamp, or DLQ)."""
        backoff = Backoff(0.1, self.max_backoff_s)
        producer_retries = 0
        while True:
            if stop.is_set():
                raise StoppedError
            exc = await self._send_one(rec, stop)
            if exc is None:
                if self._on_success is not None:
                    self._on_success()
                return
            self.renew()
            kind = classify(exc)
            if kind is Disposition.TIMESTAMP and not _has_received_time(rec):
                log.warning("kafka refused the event's timestamp; sending it with its receive time",
                            extra={"topic": rec.topic, "timestamp_ms": rec.timestamp_ms, "error": describe(exc)})
                self.builder.tally["timestamp_replaced"] += 1
                rec = with_received_time(rec)
                continue
            if kind in (Disposition.TIMESTAMP, Disposition.RECORD) and rec.topic != self.builder.dlq:
                log.error("kafka refused a record for good; sending it to the DLQ",
                          extra={"topic": rec.topic, "bytes": len(rec.value), "error": describe(exc)})
                self.builder.tally["dlq:kafka_refused"] += 1
                rec = self.builder.dead_letter(rec, f"kafka refused the record: {describe(exc)}", type(exc).__name__)
                continue
            if kind is Disposition.PRODUCER and producer_retries < 3:
                producer_retries += 1
                log.warning("producer state refused; sending again with a new producer",
                            extra={"topic": rec.topic, "error": describe(exc)})
                continue  # a new producer, then the same record again
            # the cluster's problem (or an unclassified refusal): keep it, in order, and say so
            if self._on_error is not None:
                self._on_error(exc)
            await pause(backoff.next(), stop)

    async def _send_one(self, rec: KafkaRecord, stop: asyncio.Event) -> BaseException | None:
        try:
            producer = await self.producer()
            fut = await producer.send(rec.topic, rec.value, key=rec.key, headers=rec.headers,
                                      timestamp_ms=rec.timestamp_ms)
            await wait_done([fut], stop)
            exc: BaseException | None = fut.exception()
            return exc
        except StoppedError:
            raise
        except Exception as exc:
            return exc


def _has_received_time(rec: KafkaRecord) -> bool:
    return any(name == TIMESTAMP_SOURCE for name, _ in rec.headers)


async def wait_done(
    futures: list[asyncio.Future[object]], stop: asyncio.Event, wake: asyncio.Event | None = None
) -> None:
    """Until every future is done, or ``wake`` is set, or ``stop`` is set (``StoppedError``)."""
    pending = [f for f in futures if not f.done()]
    if not pending or wake is not None and wake.is_set():
        return
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    waker: asyncio.Future[Any] | None = asyncio.ensure_future(wake.wait()) if wake is not None else None
    try:
        while pending:
            waiting: list[asyncio.Future[Any]] = [*pending, stopper, *([waker] if waker else [])]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                raise StoppedError
            if waker is not None and waker in done:
                return
            pending = [f for f in pending if not f.done()]
    finally:
        stopper.cancel()
        if waker is not None:
            waker.cancel()


async def _stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=5.0)
    except Exception:
        log.warning("producer stop failed", exc_info=True)
