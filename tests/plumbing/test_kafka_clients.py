"""The producer's LZ4 level: aiokafka's own default is LZ4 HC (level 9); tpipe's producers use the
level of ``--kafka-lz4-level`` (fast mode by default), and what they write reads back."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import codec
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords

from plumbing import kafka_clients
from plumbing.settings import KafkaSettings
from tests.support.paths import FIXTURES


def _payload() -> bytes:
    bodies = [p.read_bytes() for p in sorted((FIXTURES / "bench").glob("*.json"))]
    return b"".join(bodies * 4)


@pytest.mark.parametrize("level", [1, 9])
async def test_batches_are_compressed_at_the_configured_level_and_read_back(level: int) -> None:
    producer = kafka_clients.make_producer(KafkaSettings(kafka_lz4_level=level))
    try:
        batch = BatchBuilder(256 * 1024, DefaultRecordBatch.CODEC_LZ4)
        values = [orjson.dumps({"i": i, "body": _payload().decode()}) for i in range(3)]
        for v in values:
            batch.append(timestamp=None, key=b"k", value=v, headers=[("h", b"1")])
        batch.close()
        built = bytes(batch._build())
    finally:
        await producer.stop()  # never started: nothing to flush
    records = MemoryRecords(built).next_batch()
    assert records is not None
    assert [r.value for r in records] == values, "a consumer reads the batch back"
    payload = _payload()
    from aiokafka.record._crecords import default_records as c_records

    assert c_records.lz4_encode(payload) == codec.lz4_encode(payload, level=level)
    if level == 1:
        assert c_records.lz4_encode(payload) != codec.lz4_encode(payload, level=9), "not aiokafka's LZ4 HC"
