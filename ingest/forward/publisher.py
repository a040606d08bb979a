"""Handing records to aiokafka, and knowing afterwards exactly which ones Kafka took.

``submit`` never raises: it returns ``Part``s, each a future and the indices of the records it
covers (one record, or one partition batch). A record that could not even be handed over gets a
part that has already failed. So after a failure the forwarder re-sends exactly the records Kafka
did not take — never one it already acknowledged.

The batch path uses aiokafka's batch API and a few of its private members (``_partition``,
``client._wait_on_metadata``: the calls ``send()`` makes; ``_message_accumulator``'s batch size and
compression, to build a smaller ``BatchBuilder`` for a topic that takes less); tested with the
aiokafka range pinned in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from ingest.errors import NotSubmittedError
from ingest.records import KafkaRecord

ProducerFactory = Callable[[], Awaitable[AIOKafkaProducer]]

BATCH_MIN_RECORDS = 16  # below this, per-record send() (lets concurrent small publishers share a linger batch)


@dataclass(slots=True)
class Part:
    """Records ``indices`` of a chunk, acknowledged (or refused) together by ``future``."""

    future: asyncio.Future[object]
    indices: list[int]


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    fut.exception()  # retrieved: never reported as unhandled
    return fut


class PartitionGate:
    """Order across refusals: no batch of a partition reaches Kafka ahead of an earlier one that
    Kafka refused.

    Once the broker holds state for this producer on a partition (an acknowledged batch), the
    idempotent producer's sequence numbers guarantee it: a batch after a refused one leaves a gap
    the broker answers with ``OutOfOrderSequenceNumber``. So a *warm* partition (acknowledged in
    the last ``WARM_S``) gets batches handed to aiokafka as fast as before. On a *cold* partition
    (a new producer, or idle long enough for the broker to forget it) the broker accepts a gap, so
    each batch is handed over only once the previous one was acknowledged. aiokafka sends one batch
    per partition at a time anyway, so the cold path costs little; it applies to a producer's first
    batch per partition.
    """

    WARM_S = 600.0  # far below the broker's producer.id.expiration.ms (1 day by default)

    def __init__(self) -> None:
        self._tails: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._warm: dict[tuple[str, int], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps weak ones

    def tail(self, key: tuple[str, int]) -> asyncio.Future[None] | None:
        return self._tails.get(key)

    def set_tail(self, key: tuple[str, int], fut: asyncio.Future[None] | None) -> None:
        if fut is None:
            self._tails.pop(key, None)
        else:
            self._tails[key] = fut

    def is_warm(self, key: tuple[str, int]) -> bool:
        until = self._warm.get(key)
        return until is not None and time.monotonic() < until

    def acknowledged(self, key: tuple[str, int]) -> None:
        self._warm[key] = time.monotonic() + self.WARM_S

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def clear(self) -> None:
        """A new producer: the broker knows nothing of it yet."""
        self._tails.clear()
        self._warm.clear()


BatchBytes = Callable[[str], int | None]


async def submit(
    producer: AIOKafkaProducer,
    records: list[KafkaRecord],
    gate: PartitionGate | None = None,
    batch_bytes: BatchBytes | None = None,
) -> list[Part]:
    """Hand every record to the producer, in order; returns without waiting for acknowledgements,
    so the caller can prepare the next chunk while this one is in flight; submitting chunks one
    after the other keeps each partition's records in order.

    Large chunks (every chunk, with a ``gate``) go through the batch API: records are appended, in
    order, to one ``create_batch()`` builder per topic-partition (a new one when it fills up) and
    each partition's builders are submitted with ``send_batch`` in order. The partition is the one
    ``send()`` would pick, so keys land on the same partitions in the same order; it saves
    ``send()``'s per-record work. With a ``gate``, a builder is submitted only once the partition's
    previous batch (of this chunk or an earlier one) was acknowledged (``PartitionGate``).
    ``batch_bytes(topic)`` caps a topic's batches below what it takes (``max.message.bytes``).
    """
    if gate is None and len(records) < BATCH_MIN_RECORDS:
        return await _submit_each(producer, records)
    try:
        builders = await _build(producer, records, batch_bytes)
    except Exception as exc:  # metadata for a topic not available: nothing was handed over
        return [Part(_failed(exc), list(range(len(records))))]
    if gate is not None:
        return await _submit_gated(producer, builders, gate)
    parts: list[Part] = []

    async def submit_chain(topic: str, partition: int, chain: list[tuple[BatchBuilder, list[int]]]) -> None:
        for k, (b, indices) in enumerate(chain):  # in order: send_batch waits for the previous batch
            b.close()
            try:
                parts.append(Part(await producer.send_batch(b, topic, partition=partition), indices))
            except Exception as exc:
                parts.append(Part(_failed(exc), indices))
                for _, rest in chain[k + 1 :]:
                    parts.append(Part(_failed(NotSubmittedError(f"after {type(exc).__name__}")), rest))
                return

    await asyncio.gather(*(submit_chain(t, p, chain) for (t, p), chain in builders.items()))
    return parts


async def _submit_gated(
    producer: AIOKafkaProducer,
    builders: dict[tuple[str, int], list[tuple[BatchBuilder, list[int]]]],
    gate: PartitionGate,
) -> list[Part]:
    loop = asyncio.get_running_loop()
    parts: list[Part] = []
    for key, chain in builders.items():
        previous = gate.tail(key)
        if gate.is_warm(key) and (previous is None or previous.done() and previous.exception() is None):
            parts.extend(await _hand_over_warm(producer, gate, key, chain))  # now, as the ungated path does
            continue
        outs: list[asyncio.Future[object]] = [loop.create_future() for _ in chain]
        parts.extend(Part(out, indices) for out, (_, indices) in zip(outs, chain, strict=True))
        handed: asyncio.Future[None] = loop.create_future()
        gate.set_tail(key, handed)
        gate.spawn(_run_chain(producer, gate, key, chain, outs, previous, handed))
    return parts


async def _hand_over_warm(
    producer: AIOKafkaProducer, gate: PartitionGate, key: tuple[str, int], chain: list[tuple[BatchBuilder, list[int]]]
) -> list[Part]:
    """A warm partition with nothing waiting: each batch straight to aiokafka, in order."""
    topic, partition = key
    parts: list[Part] = []
    for k, (builder, indices) in enumerate(chain):
        builder.close()
        try:
            acked = await producer.send_batch(builder, topic, partition=partition)
        except Exception as exc:
            parts.append(Part(_failed(exc), indices))
            parts.extend(Part(_failed(NotSubmittedError("after a batch not handed over")), rest)
                         for _, rest in chain[k + 1 :])
            gate.set_tail(key, _failed(exc))
            return parts
        acked.add_done_callback(functools.partial(_warm_on_ack, gate, key))
        parts.append(Part(acked, indices))
    gate.set_tail(key, None)
    return parts


async def _run_chain(
    producer: AIOKafkaProducer,
    gate: PartitionGate,
    key: tuple[str, int],
    chain: list[tuple[BatchBuilder, list[int]]],
    outs: list[asyncio.Future[object]],
    previous: asyncio.Future[None] | None,
    handed: asyncio.Future[None],
) -> None:
    """Hand a chunk's batches for one partition to aiokafka, after the previous chunk's (see
    ``PartitionGate``); ``handed`` resolves when the next chunk's batches may follow."""
    topic, partition = key
    failed: BaseException | None = None
    if previous is not None:
        await asyncio.wait([previous])
        if previous.exception() is not None:
            failed = NotSubmittedError("an earlier batch of the partition was refused")
    k = 0
    while failed is None and k < len(chain):
        builder, out = chain[k][0], outs[k]
        builder.close()
        try:
            acked = await producer.send_batch(builder, topic, partition=partition)
        except Exception as exc:  # not handed over (the producer is closing ...)
            out.set_exception(exc)
            out.exception()
            failed = exc
        else:
            if gate.is_warm(key):  # a refusal of this batch fails every later one by sequence number
                acked.add_done_callback(lambda f, out=out: _settle_part(f, out, gate, key))
            else:
                await asyncio.wait([acked])
                _settle_part(acked, out, gate, key)
                failed = acked.exception()
        k += 1
    if failed is None:
        handed.set_result(None)
        return
    for rest in outs:
        if not rest.done():
            rest.set_exception(NotSubmittedError("after a refused batch of the same partition"))
            rest.exception()
    handed.set_exception(failed)
    handed.exception()


def _warm_on_ack(gate: PartitionGate, key: tuple[str, int], acked: asyncio.Future[object]) -> None:
    if acked.exception() is None:
        gate.acknowledged(key)


def _settle_part(acked: asyncio.Future[object], out: asyncio.Future[object], gate: PartitionGate,
                 key: tuple[str, int]) -> None:
    if out.done():
        return
    exc = acked.exception()
    if exc is None:
        gate.acknowledged(key)
        out.set_result(acked.result())
    else:
        out.set_exception(exc)
        out.exception()


async def _submit_each(producer: AIOKafkaProducer, records: list[KafkaRecord]) -> list[Part]:
    parts: list[Part] = []
    for i, r in enumerate(records):
        try:
            fut = await producer.send(r.topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms)
        except Exception as exc:  # too large for the producer, no metadata ...: the rest waits behind it
            parts.append(Part(_failed(exc), [i]))
            if i + 1 < len(records):
                parts.append(Part(_failed(NotSubmittedError(f"after {type(exc).__name__}")),
                                  list(range(i + 1, len(records)))))
            break
        parts.append(Part(fut, [i]))
    return parts


async def _build(
    producer: AIOKafkaProducer, records: list[KafkaRecord], batch_bytes: BatchBytes | None = None
) -> dict[tuple[str, int], list[tuple[BatchBuilder, list[int]]]]:
    partition_of = producer._partition  # the exact rule send() applies
    cache_keys = isinstance(producer._partitioner, DefaultPartitioner)  # deterministic per key
    known: dict[str, dict[bytes, int]] = {}
    sizes: dict[str, int | None] = {}
    builders: dict[tuple[str, int], list[tuple[BatchBuilder, list[int]]]] = {}
    for i, r in enumerate(records):
        topic, key = r.topic, r.key
        by_key = known.get(topic)
        if by_key is None:
            await producer.client._wait_on_metadata(topic)  # as send() does before partitioning
            by_key = known[topic] = {}
            sizes[topic] = batch_bytes(topic) if batch_bytes is not None else None
        partition = by_key.get(key)
        if partition is None:
            partition = partition_of(topic, None, key, r.value, key, r.value)
            if cache_keys:
                by_key[key] = partition
        chain = builders.get((topic, partition))
        if chain is None:
            chain = builders[(topic, partition)] = [(_new_builder(producer, sizes[topic]), [])]
        builder, indices = chain[-1]
        if builder.append(timestamp=r.timestamp_ms, key=key, value=r.value, headers=r.headers) is None:
            builder, indices = _new_builder(producer, sizes[topic]), []  # the first record always fits
            chain.append((builder, indices))
            builder.append(timestamp=r.timestamp_ms, key=key, value=r.value, headers=r.headers)
        indices.append(i)
    return builders


def _new_builder(producer: AIOKafkaProducer, size: int | None) -> BatchBuilder:
    """A batch builder of the producer's size, or smaller when the topic takes less."""
    acc = producer._message_accumulator
    if size is None or size >= acc._batch_size:
        return producer.create_batch()
    return BatchBuilder(size, acc._compression_type, is_transactional=False)


def outcomes(parts: list[Part], count: int) -> list[BaseException | None]:
    """Per record (by index), the exception its part ended with, or None if Kafka took it.
    Every part must be done."""
    out: list[BaseException | None] = [None] * count
    for part in parts:
        exc = part.future.exception()
        if exc is not None:
            for i in part.indices:
                out[i] = exc
    return out


async def publish(producer: AIOKafkaProducer, records: list[KafkaRecord]) -> None:
    """Send every record and wait for all acknowledgements; raises the first failure
    (broker-mode request path: the sender retries the whole request)."""
    parts = await submit(producer, records)
    await asyncio.wait([p.future for p in parts])
    for part in parts:
        exc = part.future.exception()
        if exc is not None:
            raise exc
