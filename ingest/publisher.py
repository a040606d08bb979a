"""Handing records to aiokafka, and knowing afterwards exactly which ones Kafka took.

``submit`` never raises: it returns ``Part``s, each a future and the indices of the records it
covers (one record, or one partition batch). A record that could not even be handed over gets a
part that has already failed. So after a failure the forwarder re-sends exactly the records Kafka
did not take — never one it already acknowledged.

The batch path uses aiokafka's batch API and two of its private members (``_partition``,
``client._wait_on_metadata``), the same calls ``send()`` makes; tested with the aiokafka range
pinned in pyproject.toml.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from ingest.kafka_errors import NotSubmittedError
from ingest.records import KafkaRecord

ProducerFactory = Callable[[], Awaitable[AIOKafkaProducer]]

BATCH_MIN_RECORDS = 16  # below this, per-record send() (lets concurrent small publishers share a linger batch)


@dataclass(slots=True)
class Part:
    """Records ``indices`` of a chunk, acknowledged (or refused) together by ``future``."""

    future: asyncio.Future[object]
    indices: list[int]


def _failed(exc: BaseException) -> asyncio.Future[object]:
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    fut.exception()  # retrieved: never reported as unhandled
    return fut


async def submit(producer: AIOKafkaProducer, records: list[KafkaRecord]) -> list[Part]:
    """Hand every record to the producer, in order; returns once all are in aiokafka's accumulator
    (not acknowledged), so the caller can prepare the next chunk while this one is in flight;
    submitting chunks one after the other keeps each partition's records in order.

    Large chunks go through the batch API: records are appended, in order, to one ``create_batch()``
    builder per topic-partition (a new one when it fills up) and each partition's builders are
    submitted with ``send_batch`` in order. The partition is the one ``send()`` would pick, so keys
    land on the same partitions in the same order; it saves ``send()``'s per-record work.
    """
    if len(records) < BATCH_MIN_RECORDS:
        return await _submit_each(producer, records)
    try:
        builders = await _build(producer, records)
    except Exception as exc:  # metadata for a topic not available: nothing was handed over
        return [Part(_failed(exc), list(range(len(records))))]
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
    producer: AIOKafkaProducer, records: list[KafkaRecord]
) -> dict[tuple[str, int], list[tuple[BatchBuilder, list[int]]]]:
    partition_of = producer._partition  # the exact rule send() applies
    cache_keys = isinstance(producer._partitioner, DefaultPartitioner)  # deterministic per key
    known: dict[str, dict[bytes, int]] = {}
    builders: dict[tuple[str, int], list[tuple[BatchBuilder, list[int]]]] = {}
    for i, r in enumerate(records):
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
            chain = builders[(topic, partition)] = [(producer.create_batch(), [])]
        builder, indices = chain[-1]
        if builder.append(timestamp=r.timestamp_ms, key=key, value=r.value, headers=r.headers) is None:
            builder, indices = producer.create_batch(), []  # full: the first record always fits a new builder
            chain.append((builder, indices))
            builder.append(timestamp=r.timestamp_ms, key=key, value=r.value, headers=r.headers)
        indices.append(i)
    return builders


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
