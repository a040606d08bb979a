"""Forwarder: publishes the spool to Kafka in spool order and advances the cursor after Kafka acks.

It survives a broker that is down at start, goes away, or is slow: the spool keeps growing on disk,
and the forwarder retries with backoff until the broker takes the records again. The cursor moves
only after every record of a chunk was acknowledged (acks=all, idempotent producer), so a crash or
a failed chunk means re-sending — at-least-once into Kafka, with the same ``event_id`` for consumers
to deduplicate on — never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from ingest.records import RecordBuilder, TypeCounts
from ingest.settings import IngestSettings
from ingest.spool.files import Position
from ingest.spool.frame import RAW_TOPIC, SpoolRecord
from schemas import topics
from tpipe import kafka_clients, metrics

log = logging.getLogger("tpipe.forwarder")

ProducerFactory = Callable[[], Awaitable[AIOKafkaProducer]]


BATCH_MIN_RECORDS = 16  # below this, per-record send() (lets concurrent small publishers share a linger batch)


async def submit(producer: AIOKafkaProducer, records: list[SpoolRecord]) -> list[asyncio.Future[object]]:
    """Hand every record to the producer, in spool order; returns the acknowledgement futures.

    Returns once all records are in aiokafka's accumulator (not acknowledged), so the caller can
    prepare the next chunk while this one is in flight; submitting chunks one after the other keeps
    each partition's records in spool order.

    Large chunks go through aiokafka's batch API: records are appended, in spool order, to one
    ``create_batch()`` builder per topic-partition (a new one when it fills up) and each partition's
    builders are submitted with ``send_batch`` in order. The partition is the one ``send()`` would pick
    (``producer._partition``, i.e. the producer's partitioner over the key), so keys land on the same
    partitions in the same order as before; it saves aiokafka's per-message ``send()`` work (metadata
    wait, size estimate, pure-Python murmur2 per record, one future per record).
    """
    if len(records) < BATCH_MIN_RECORDS:
        return [
            await producer.send(r.topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms)
            for r in records
        ]

    partition_of = producer._partition  # the exact rule send() applies
    cache_keys = isinstance(producer._partitioner, DefaultPartitioner)  # deterministic per key
    known: dict[str, dict[bytes, int]] = {}
    builders: dict[tuple[str, int], list[BatchBuilder]] = {}
    for r in records:
        topic, key = r.topic, r.key
        by_key = known.get(topic)
        if by_key is None:
            await producer.client._wait_on_metadata(topic)  # as send() does before partitioning
            by_key = known[topic] = {}
        partition = by_key.get(key)
        if partition is None:
            partition = partition_of(topic, None, key, r.value, key, r.value)
            if cache_keys:
                by_key[key] = partition
        chain = builders.get((topic, partition))
        if chain is None:
            chain = builders[(topic, partition)] = [producer.create_batch()]
        if chain[-1].append(timestamp=r.timestamp_ms, key=key, value=r.value, headers=r.headers) is None:
            chain.append(producer.create_batch())  # full: the first record always fits a new builder
            chain[-1].append(timestamp=r.timestamp_ms, key=key, value=r.value, headers=r.headers)

    futures: list[asyncio.Future[object]] = []

    async def submit_chain(topic: str, partition: int, chain: list[BatchBuilder]) -> None:
        for b in chain:  # in order: send_batch waits for the partition's previous batch to be drained
            b.close()
            futures.append(await producer.send_batch(b, topic, partition=partition))

    submitted = await asyncio.gather(
        *(submit_chain(t, p, chain) for (t, p), chain in builders.items()), return_exceptions=True
    )
    for res in submitted:
        if isinstance(res, BaseException):
            _settle(futures)
            raise res
    return futures


async def acknowledged(futures: list[asyncio.Future[object]]) -> None:
    """Wait for every acknowledgement; raises the first failure."""
    for res in await asyncio.gather(*futures, return_exceptions=True):
        if isinstance(res, BaseException):
            raise res


def _settle(futures: list[asyncio.Future[object]]) -> None:
    """Abandoned acknowledgements: retrieve their outcome later so none is reported as unhandled."""
    if futures:
        asyncio.ensure_future(asyncio.gather(*futures, return_exceptions=True))


async def publish(producer: AIOKafkaProducer, records: list[SpoolRecord]) -> None:
    """Send every record and wait for all acknowledgements; raises the first failure."""
    await acknowledged(await submit(producer, records))


def _event_ids(records: list[SpoolRecord]) -> list[str]:
    ids = []
    for r in records:
        for name, value in r.headers:
            if name == "event_id":
                ids.append(value.decode())
                break
    return ids


async def wait_forwarded(
    has_unforwarded: Callable[[], bool],
    progress: asyncio.Event,
    timeout_s: float,
    nudge: Callable[[], None] | None = None,
) -> bool:
    """Wait (re-checking whenever ``progress`` is set, at least every 0.5 s) until nothing is left
    unforwarded or ``timeout_s`` passes; True if drained. ``nudge`` wakes an idle forwarder loop."""
    deadline = time.monotonic() + timeout_s
    while has_unforwarded():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        progress.clear()
        if nudge is not None:
            nudge()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), timeout=min(remaining, 0.5))
    return True


class SpoolSource(Protocol):
    """What the forwarder needs of a spool: the receiver's ``Spool`` itself (inline forwarder), or
    the forwarder process's view of the same directory (``ingest.forward_process.SpoolView``)."""

    committed: asyncio.Event

    @property
    def cursor(self) -> Position: ...

    def read(self, start: Position, *, max_records: int) -> tuple[list[SpoolRecord], Position]: ...

    def advance(self, new_cursor: Position, events: int) -> None: ...

    def has_unforwarded(self) -> bool: ...


def expand_raw(records: list[SpoolRecord], builder: RecordBuilder, counts: TypeCounts) -> list[SpoolRecord]:
    """Spooled webhook bodies -> their Kafka records, in spool order (ready records pass through)."""
    out: list[SpoolRecord] = []
    expand = builder.expand
    for r in records:
        if r.topic == RAW_TOPIC:
            out.extend(expand(r, counts))
        else:
            out.append(r)
    return out


def record_forwarded_metrics(events: int, counts: TypeCounts, latency_s: float) -> None:
    metrics.BROKER_UP.set(1)
    metrics.FORWARDED.inc(events)
    metrics.FORWARD_LATENCY.observe(latency_s)
    for etype, (n, invalid) in counts.items():
        metrics.EVENTS_ACCEPTED.labels(etype).inc(n)
        if invalid:
            metrics.EVENTS_INVALID.labels(etype).inc(invalid)


def record_down_metrics() -> None:
    metrics.BROKER_UP.set(0)
    metrics.FORWARD_ERRORS.inc()


def producer_factory(settings: IngestSettings) -> ProducerFactory:
    """Topics ensured, then the forwarder's producer started (retried by the caller on failure)."""

    async def start() -> AIOKafkaProducer:
        await kafka_clients.ensure_topics(settings, topics.all_topics(settings.topic_prefix))
        producer = kafka_clients.make_producer(
            settings, role="forwarder", request_timeout_ms=int(settings.broker_timeout_s * 1000)
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    return start


@dataclass(slots=True)
class _Chunk:
    """One chunk read from the spool and submitted to the producer, awaiting its acknowledgements."""

    end: Position  # spool position after its last frame
    spool_records: int  # frames it covers (webhook bodies)
    out: list[SpoolRecord]  # the Kafka records built from them
    counts: TypeCounts
    spooled_at_ms: int | None  # of its first frame
    futures: list[asyncio.Future[object]]
    started: float  # monotonic, when it was read


class Forwarder:
    def __init__(
        self,
        spool: SpoolSource,
        producer_factory: ProducerFactory,
        builder: RecordBuilder,
        *,
        batch_events: int = 5000,
        max_inflight: int = 3,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.spool = spool
        self.builder = builder
        self._factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self.batch_events = batch_events
        self.max_inflight = max(1, max_inflight)
        self.max_backoff_s = max_backoff_s
        self.broker_up = False
        self.last_error: str | None = None
        self.forwarded = 0
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._publish_started: float | None = None

    def broker_reachable(self, stall_after_s: float) -> bool:
        """Up when the last publish succeeded and none has been waiting longer than ``stall_after_s``.

        The idempotent producer retries a batch until the broker takes it (no expiry, no duplicates),
        so a broker outage shows as a publish that stays pending, not as an error.
        """
        pending = self.publish_pending_s()
        return self.broker_up and (pending is None or pending <= stall_after_s)

    def publish_pending_s(self) -> float | None:
        """How long the chunk now in flight has waited for Kafka (None when nothing is in flight)."""
        started = self._publish_started
        return None if started is None else round(time.monotonic() - started, 3)

    @property
    def producer(self) -> AIOKafkaProducer | None:
        return self._producer

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = await self._factory()
        return self._producer

    def stop(self) -> None:
        self._stop.set()
        self.spool.committed.set()

    async def run(self) -> None:
        """Forward until ``stop()``: up to ``max_inflight`` chunks in flight, acknowledged in order.

        While Kafka acknowledges one chunk the next is read, parsed and submitted. The cursor only
        moves past a chunk once it and every chunk before it were acknowledged. On a failure the
        chunks in flight are abandoned and forwarding restarts from the cursor (re-sending: same ids).
        """
        backoff = 0.1
        inflight: deque[_Chunk] = deque()
        pos = self.spool.cursor
        while not self._stop.is_set():
            while inflight and all(f.done() for f in inflight[0].futures):
                if not self._complete(inflight.popleft()):
                    break
            if len(inflight) < self.max_inflight:
                self.spool.committed.clear()
                records, end = self.spool.read(pos, max_records=self.batch_events)
                if records or end != pos:
                    started = time.monotonic()
                    counts: TypeCounts = {}
                    try:
                        out = expand_raw(records, self.builder, counts)
                        futures = await submit(await self._ensure_producer(), out) if out else []
                    except (TimeoutError, KafkaError, OSError) as exc:
                        pos, backoff = await self._failed(exc, inflight, backoff)
                        continue
                    inflight.append(_Chunk(end, len(records), out, counts,
                                           records[0].spooled_at_ms if records else None, futures, started))
                    pos = end
                    continue
            if not inflight:
                self._publish_started = None
                self._idle.set()
                await self.spool.committed.wait()
                continue
            self._idle.clear()
            head = inflight[0]
            self._publish_started = head.started
            try:
                await acknowledged(head.futures)
            except (TimeoutError, KafkaError, OSError) as exc:
                pos, backoff = await self._failed(exc, inflight, backoff)
                continue
            backoff = 0.1
        for chunk in inflight:
            _settle(chunk.futures)
        self._publish_started = None
        self._idle.set()

    def _complete(self, chunk: _Chunk) -> bool:
        """The head chunk is acknowledged: report it and move the cursor. False if it failed."""
        for f in chunk.futures:
            if f.exception() is not None:
                return False
        if chunk.out:
            if not self.broker_up:
                log.info("kafka reachable, forwarding", extra={"cursor": [chunk.end.segment, chunk.end.offset]})
            self.broker_up, self.last_error = True, None
            self.forwarded += len(chunk.out)
            latency = max(0.0, time.time() - (chunk.spooled_at_ms or 0) / 1000)
            self.report_forwarded(len(chunk.out), chunk.counts, latency)  # first: metrics are current once drained
            if log.isEnabledFor(logging.DEBUG):
                log.debug("forwarded", extra={"records": len(chunk.out), "spool_records": chunk.spool_records,
                                              "event_ids": _event_ids(chunk.out)})
        self.spool.advance(chunk.end, chunk.spool_records)
        return True

    async def _failed(self, exc: BaseException, inflight: deque[_Chunk], backoff: float) -> tuple[Position, float]:
        """Drop the pipeline, wait ``backoff``, and restart from the durable cursor."""
        for chunk in inflight:
            _settle(chunk.futures)
        inflight.clear()
        self._publish_started = None
        self._mark_down(exc)
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=backoff)
        except TimeoutError:
            pass
        return self.spool.cursor, min(backoff * 2, self.max_backoff_s)

    def report_forwarded(self, events: int, counts: TypeCounts, latency_s: float) -> None:
        """Kafka took a chunk: ``events`` records, ``counts`` per type, oldest one spooled ``latency_s`` ago."""
        record_forwarded_metrics(events, counts, latency_s)

    def report_down(self) -> None:
        """A publish failed (``broker_up``/``last_error`` already say why)."""
        record_down_metrics()

    def _mark_down(self, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        if self.broker_up or self.last_error is None:
            log.warning("kafka publish failed, keeping events in the spool", extra={"error": msg})
        self.broker_up, self.last_error = False, msg
        self.report_down()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the spool is fully forwarded or ``timeout_s`` passes; True if drained."""
        return await wait_forwarded(self.spool.has_unforwarded, self._idle, timeout_s, nudge=self.spool.committed.set)

    async def close(self) -> None:
        self.stop()
        if self._producer is not None:
            try:
                await self._producer.stop()
            except Exception:
                log.warning("producer stop failed", exc_info=True)
            self._producer = None
