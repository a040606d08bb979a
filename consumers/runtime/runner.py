"""The consumer loop shared by every worker: poll, handle, dead-letter, checkpoint, commit, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers.runtime.decode import decode_envelope, default_decoder
from consumers.runtime.dlq import DeadLetter
from consumers.runtime.errors import RetryableError
from consumers.runtime.settings import WorkerSettings
from consumers.runtime.worker import Failure, Offsets, Worker, WorkerRecord
from plumbing import kafka_clients, metrics

log = logging.getLogger("consumers.runtime")

_MAX_BACKOFF_S = 30.0


def worker_topics(worker: Worker, prefix: str) -> list[str]:
    """The topics a worker reads: ``schemas.topics.topic_for`` of each of its event types."""
    from schemas.topics import topic_for

    return list(dict.fromkeys(topic_for(t, prefix) for t in worker.event_types))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: WorkerRuntime) -> None:
        self._runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runtime._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runtime._on_assigned(set(assigned))


class WorkerRuntime:
    """Runs one worker in one consumer group until ``stop`` is set, then drains.

    In-process use (tests)::

        stop = asyncio.Event()
        rt = WorkerRuntime(worker, settings, stop=stop)
        task = asyncio.create_task(rt.run())
        await asyncio.wait_for(rt.assigned_event.wait(), 30)
        ...
        stop.set(); await task          # drains: final forced checkpoint + offset commit

    The runtime never auto-commits. After each poll it calls ``worker.checkpoint`` and commits to
    Kafka exactly the offsets the worker reports durable. Revocation and batch handling are
    serialised by one lock, so a revocation waits for the batch in flight, then forces a
    checkpoint before the partitions go.
    """

    def __init__(
        self,
        worker: Worker,
        settings: WorkerSettings,
        *,
        stop: asyncio.Event | None = None,
        decode: Callable[[bytes], Any] = decode_envelope,
    ) -> None:
        if not worker.name:
            raise ValueError("worker.name is empty")
        self.worker = worker
        self.settings = settings
        self.stop_event = stop or asyncio.Event()
        self.group_id = settings.group_for(worker.name)
        self.assigned_event = asyncio.Event()  # set at every (non-empty or empty) assignment
        self._decode = default_decoder() if decode is decode_envelope else decode
        self._lock = asyncio.Lock()
        self._revoke_pending = asyncio.Event()  # a revocation waits for the lock: stop backing off
        self._owned: set[TopicPartition] = set()
        self._handled: Offsets = {}  # next offset to read, per owned partition, as handled so far
        self._committed: Offsets = {}  # last offsets committed to Kafka
        self._lag_labels: set[tuple[str, str]] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        from schemas.topics import dlq_topic

        self.topics = worker_topics(worker, settings.topic_prefix)
        self.dlq_topic: str = dlq_topic(settings.topic_prefix)

    # --- public ------------------------------------------------------------------------------
    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._owned)

    @property
    def handled(self) -> Offsets:
        return dict(self._handled)

    async def run(self) -> None:
        """Consume until the stop event is set, then drain (bounded by ``drain_timeout_s``)."""
        s, w = self.settings, self.worker
        await kafka_clients.ensure_topics(s, [*self.topics, self.dlq_topic])
        await w.start()
        producer = kafka_clients.make_producer(s, role=f"{w.name}-dlq")
        consumer = kafka_clients.make_consumer(
            s, group_id=self.group_id, role=w.name, max_poll_records=s.batch_size
        )
        self._producer, self._consumer = producer, consumer
        started: list[Any] = []
        try:
            await producer.start()
            started.append(producer)
            await consumer.start()
            started.append(consumer)
            consumer.subscribe(self.topics, listener=_Listener(self))
            log.info(
                "worker started",
                extra={"worker": w.name, "group": self.group_id, "topics": self.topics, **w.describe()},
            )
            while not self.stop_event.is_set():
                records = await consumer.getmany(timeout_ms=s.batch_timeout_ms, max_records=s.batch_size)
                async with self._lock:
                    if records:
                        await self._process(records)
                    await self._checkpoint(force=False)
            await self._drain()
        finally:
            with contextlib.suppress(Exception):
                await w.stop()
            for client in reversed(started):
                with contextlib.suppress(Exception):
                    await client.stop()
            self._clear_lag()
            self._consumer = self._producer = None
            log.info("worker stopped", extra={"worker": w.name, "group": self.group_id})

    # --- the loop ----------------------------------------------------------------------------
    async def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        async with self._lock:
            backoff = self.settings.retry_backoff_ms / 1000
            while True:
                try:
                    await asyncio.wait_for(
                        self._checkpoint(force=True, raise_retryable=True),
                        max(0.1, deadline - time.monotonic()),
                    )
                    return
                except (RetryableError, KafkaError) as exc:
                    if time.monotonic() + backoff >= deadline:
                        log.error("drain gave up, uncommitted work is redelivered", extra={"error": str(exc)})
                        return
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
                except TimeoutError:
                    log.error("drain timed out, uncommitted work is redelivered", extra={"worker": self.worker.name})
                    return

    async def _process(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        batch: list[WorkerRecord] = []
        dead: list[DeadLetter] = []
        ends: Offsets = {}
        starts: Offsets = {}
        for tp, recs in records.items():
            if tp not in self._owned or not recs:
                continue  # fetched before a revocation: the next owner reads it
            decode = self._decode
            for r in recs:
                hs = r.headers
                headers = tuple([(k, v or b"") for k, v in hs]) if hs else ()
                try:
                    env = decode(r.value)
                except Exception as exc:  # any decode error means the bytes are not an Envelope
                    dead.append(
                        DeadLetter(r.topic, r.partition, r.offset, r.key, r.value, headers, r.timestamp,
                                   f"not an envelope: {exc}", "DecodeError")
                    )
                    continue
                batch.append(
                    WorkerRecord(env, r.topic, r.partition, r.offset, r.key, r.value, headers, r.timestamp)
                )
            starts[tp], ends[tp] = recs[0].offset, recs[-1].offset + 1
        if not ends:
            return
        failures = await self._handle_with_retry(batch) if batch else []
        if failures is None:  # stopping or revoked while backing off: nothing advances, read it again
            if self._consumer is not None:
                for tp, off in starts.items():
                    if tp in self._owned:
                        self._consumer.seek(tp, off)
            return
        for f in failures:
            r = f.record
            dead.append(
                DeadLetter(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms,
                           f.reason, f.error_type)
            )
        if dead:
            await self._dead_letter(dead)
        name = self.worker.name
        metrics.WORKER_PROCESSED.labels(name).inc(len(batch) - len(failures))
        if dead:
            metrics.WORKER_FAILED.labels(name).inc(len(dead))
        self._handled.update(ends)

    async def _handle_with_retry(self, batch: list[WorkerRecord]) -> list[Failure] | None:
        backoff = self.settings.retry_backoff_ms / 1000
        while True:
            try:
                try:
                    return list(await self.worker.handle(batch))
                except RetryableError:
                    raise
                except Exception as exc:
                    if len(batch) == 1:
                        return [Failure.from_exception(batch[0], exc)]
                    log.warning(
                        "batch failed, retrying record by record",
                        extra={"worker": self.worker.name, "error": repr(exc), "size": len(batch)},
                    )
                    return await self._handle_one_by_one(batch)
            except RetryableError as exc:
                log.warning(
                    "retryable failure, backing off",
                    extra={"worker": self.worker.name, "error": str(exc), "backoff_s": backoff},
                )
                stop = asyncio.ensure_future(self.stop_event.wait())
                revoke = asyncio.ensure_future(self._revoke_pending.wait())
                await asyncio.wait({stop, revoke}, timeout=backoff, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                revoke.cancel()
                if self.stop_event.is_set() or self._revoke_pending.is_set():
                    return None
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _handle_one_by_one(self, batch: list[WorkerRecord]) -> list[Failure]:
        failures: list[Failure] = []
        for rec in batch:
            try:
                failures.extend(await self.worker.handle([rec]))
            except RetryableError:
                raise
            except Exception as exc:
                failures.append(Failure.from_exception(rec, exc))
        return failures

    async def _dead_letter(self, dead: Iterable[DeadLetter]) -> None:
        """Publish to the DLQ and wait for the broker's acknowledgement (retrying while Kafka is down)."""
        assert self._producer is not None
        backoff = self.settings.retry_backoff_ms / 1000
        items = list(dead)
        while True:
            try:
                futures = [
                    await self._producer.send(
                        self.dlq_topic, value=d.value, key=d.key,
                        headers=d.dlq_headers(self.worker.name), timestamp_ms=d.timestamp_ms,
                    )
                    for d in items
                ]
                await asyncio.gather(*futures)
                break
            except KafkaError as exc:
                log.warning("DLQ publish failed, retrying", extra={"error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        metrics.WORKER_DLQ.labels(self.worker.name).inc(len(items))
        for d in items:
            log.warning(
                "dead-lettered",
                extra={"worker": self.worker.name, "topic": d.topic, "partition": d.partition,
                       "offset": d.offset, "error_type": d.error_type, "error": d.reason[:300]},
            )

    async def _checkpoint(self, *, force: bool, raise_retryable: bool = False) -> None:
        owned = {tp: off for tp, off in self._handled.items() if tp in self._owned}
        t0 = time.perf_counter()
        try:
            durable = await self.worker.checkpoint(dict(owned), force=force)
        except RetryableError as exc:
            if raise_retryable:
                raise
            log.warning("checkpoint failed, retried later", extra={"worker": self.worker.name, "error": str(exc)})
            durable = None
        if durable:
            todo = {
                tp: off for tp, off in durable.items()
                if tp in self._owned and self._committed.get(tp) != off
            }
            if todo:
                await self._commit(todo)
                metrics.WORKER_COMMIT_SECONDS.labels(self.worker.name).observe(time.perf_counter() - t0)
        self._update_lag()

    async def _commit(self, offsets: Offsets) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The effects are durable and idempotent by event_id: a lost commit only means redelivery.
            log.warning("offset commit failed", extra={"worker": self.worker.name, "error": repr(exc)})
            return
        self._committed.update(offsets)

    def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for tp in self._owned:
            try:
                high = consumer.highwater(tp)
            except AssertionError:
                continue
            pos = self._handled.get(tp)
            if high is None or pos is None:
                continue
            label = (tp.topic, str(tp.partition))
            self._lag_labels.add(label)
            metrics.WORKER_LAG.labels(self.worker.name, *label).set(max(0, high - pos))

    def _clear_lag(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        labels = (
            set(self._lag_labels) if partitions is None else {(tp.topic, str(tp.partition)) for tp in partitions}
        )
        for label in labels & self._lag_labels:
            with contextlib.suppress(KeyError):
                metrics.WORKER_LAG.remove(self.worker.name, *label)
            self._lag_labels.discard(label)

    # --- rebalance ---------------------------------------------------------------------------
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        self._revoke_pending.set()
        async with self._lock:
            self._revoke_pending.clear()
            try:
                await self._checkpoint(force=True)
            except Exception:
                log.exception("checkpoint before revocation failed", extra={"worker": self.worker.name})
            try:
                await self.worker.on_revoked(revoked)
            except Exception:
                log.exception("worker.on_revoked failed", extra={"worker": self.worker.name})
            self._owned -= revoked
            for tp in revoked:
                self._handled.pop(tp, None)
                self._committed.pop(tp, None)
            self._clear_lag(revoked)
            self.assigned_event.clear()
            log.info("partitions revoked", extra={"worker": self.worker.name, "partitions": _fmt(revoked)})

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            self._owned = set(assigned)
            for tp in list(self._handled):
                if tp not in assigned:
                    self._handled.pop(tp, None)
            stored: Offsets | None = None
            if assigned:
                try:
                    stored = await self.worker.positions(set(assigned))
                except Exception:
                    log.exception("worker.positions failed; starting from the group's offsets",
                                  extra={"worker": self.worker.name})
            consumer = self._consumer
            for tp, off in (stored or {}).items():
                if tp in assigned and consumer is not None:
                    consumer.seek(tp, off)
                    self._handled[tp] = off
            log.info(
                "partitions assigned",
                extra={"worker": self.worker.name, "partitions": _fmt(assigned),
                       "stored_positions": {f"{tp.topic}:{tp.partition}": o for tp, o in (stored or {}).items()}},
            )
            self.assigned_event.set()


def _fmt(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}:{tp.partition}" for tp in tps)


async def run(worker: Worker, settings: WorkerSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run ``worker`` in-process until ``stop`` is set (then drain). For tests and embedding."""
    await WorkerRuntime(worker, settings, stop=stop).run()
