"""How the forwarder cuts the spool into chunks: while one waits for Kafka, bodies spooled meanwhile
are gathered into the next chunk instead of each becoming a chunk of its own (real broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.forward.forwarder import Forwarder, producer_factory
from ingest.records import RecordBuilder, TypeCounts
from ingest.spool.frame import encode
from ingest.spool.log import Spool
from plumbing.settings import KafkaSettings
from tests.support.kafka_broker import read_all
from tests.support.receiver_harness import ingest_settings

pytestmark = pytest.mark.kafka


def _body(seq: int) -> bytes:
    return orjson.dumps({"createdAt": f"2025-01-01T00:00:{seq:02d}Z", "vin": "5YJ3E1EA0KF000001", "data": {"Seq": seq}})


class ChunkLog(Forwarder):
    """The forwarder, noting the size of every chunk Kafka took."""

    chunks: list[int]
    took: asyncio.Event

    def report_forwarded(self, events: int, counts: TypeCounts, latency_s: float, tally: dict[str, int]) -> None:
        self.chunks.append(events)
        self.took.set()


async def test_bodies_spooled_while_a_chunk_waits_for_kafka_go_as_one_chunk(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """Kafka holds a chunk's acknowledgement while five more bodies are spooled, one commit each (the
    first of them while the chunk is still being handed over): they reach Kafka as one chunk."""
    settings = ingest_settings(kafka_settings, tmp_path / "spool")
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30, segment_bytes=1 << 20)
    spool.open()
    spool.start()
    release, handed, inject = asyncio.Event(), asyncio.Event(), False
    start_producer = producer_factory(settings)

    async def held_producer() -> Any:
        producer = await start_producer()
        real = producer.send_batch

        async def send_batch(batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
            nonlocal inject
            acked = await real(batch, topic, partition=partition)
            if inject:  # a body committed while the chunk is being handed over
                inject = False
                await spool.append_frame(encode(_body(2), 1_700_000_000_002))
                handed.set()
            held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            async def relay() -> None:
                await release.wait()
                try:
                    held.set_result(await acked)
                except Exception as exc:
                    held.set_exception(exc)

            asyncio.ensure_future(relay())
            return held

        producer.send_batch = send_batch
        return producer

    fw = ChunkLog(spool, held_producer, RecordBuilder(settings.topic_prefix, None), batch_events=1000,
                  max_inflight=3, gather_bytes=1 << 20)
    fw.chunks, fw.took = [], asyncio.Event()
    task = asyncio.get_running_loop().create_task(fw.run())
    try:
        release.set()  # a first body, acknowledged at once: the partition is known to Kafka (warm)
        await spool.append_frame(encode(_body(0), 1_700_000_000_000))
        await asyncio.wait_for(fw.took.wait(), 30)
        release.clear()
        inject = True
        await spool.append_frame(encode(_body(1), 1_700_000_000_001))
        await asyncio.wait_for(handed.wait(), 30)
        for seq in range(3, 7):
            await spool.append_frame(encode(_body(seq), 1_700_000_000_000 + seq))
        release.set()
        assert await fw.drain(30)
    finally:
        await fw.close()
        await task
        await spool.close()
    assert fw.chunks == [1, 1, 5], "the bodies spooled while a chunk waited went as one chunk"
    records = await read_all(kafka_settings, f"{kafka_settings.topic_prefix}.data", expected_count=7)
    assert [orjson.loads(r.value)["payload"]["data"]["Seq"] for r in records] == list(range(7))
