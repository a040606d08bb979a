"""Telemetry (lake) worker throughput helpers.

    python -m bench.lake prefill --kafka K --prefix P --events N --bodies BODY...   # N distinct data events into <P>.data
    python -m bench.lake raw --kafka K --prefix P --events N               # raw getmany loop (baseline)

``raw`` subscribes a fresh consumer group to the topics the telemetry worker reads, with the workers'
consumer settings (``plumbing.kafka_clients.consumer_config``), and counts records from ``getmany`` without
decoding them; it reports events/s from the first record to the N-th. The worker itself is run by
``bench.run`` as ``tpipe consume telemetry`` and timed from its ``tpipe_worker_records_processed_total``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import orjson

from plumbing import kafka_clients
from plumbing.settings import KafkaSettings
from schemas import topics
from schemas.envelope import Envelope
from schemas.parse import parse_body
from schemas.times import ms_to_iso

perf = time.perf_counter
LAKE_TYPES = ("data", "state", "connectivity", "vehicle_data")


def distinct_records(bodies: list[bytes], events: int, vins: int, prefix: str) -> list[Envelope]:
    """N distinct events (every one its own event_id: the VIN and createdAt vary), as the forwarder
    publishes them. A lake worker's throughput on redelivered duplicates would say little."""
    base = [orjson.loads(b) for b in bodies]
    t0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: one day partition for the whole run
    now = int(time.time() * 1000)
    out: list[Envelope] = []
    for i in range(events):
        obj = dict(base[i % len(base)])
        obj["vin"] = f"5YJ3BENCH{i % vins:08d}"
        obj["createdAt"] = ms_to_iso(t0 + i * 10)
        out.extend(parse_body(orjson.dumps(obj), received_at_ms=now))
    return out


async def prefill(settings: KafkaSettings, envelopes: list[Envelope]) -> dict[str, int]:
    """Publish the envelopes by the wire contract (docs/internal-contracts.md: topic per type, key,
    headers, the envelope JSON as value, created_at_ms as timestamp), with the receiver's producer config."""
    prefix = settings.topic_prefix
    await kafka_clients.ensure_topics(settings, topics.all_topics(prefix))
    producer = kafka_clients.make_producer(settings, role="bench-prefill")
    await producer.start()
    try:
        for i in range(0, len(envelopes), 5000):
            futures = [
                await producer.send(topics.topic_for(env.type, prefix), value=env.to_json(),
                                    key=topics.key_for(env), headers=topics.headers_for(env),
                                    timestamp_ms=env.created_at_ms)
                for env in envelopes[i : i + 5000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {"produced": len(envelopes), "distinct_event_ids": len({env.event_id for env in envelopes})}


async def raw(settings: KafkaSettings, events: int, timeout_s: float) -> dict:
    names = [topics.topic_for(t, settings.topic_prefix) for t in LAKE_TYPES]
    consumer = kafka_clients.make_consumer(settings, *names, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    n = 0
    t_first = None
    deadline = time.monotonic() + timeout_s
    try:
        while n < events and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=1000)
            for recs in got.values():
                if recs and t_first is None:
                    t_first = perf()
                n += len(recs)
        t_end = perf()
    finally:
        await consumer.stop()
    secs = (t_end - t_first) if t_first is not None else float("nan")
    return {"consumed": n, "seconds": secs, "events_per_s": n / secs if secs and secs > 0 else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("prefill", "raw"))
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--vins", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--bodies", nargs="*", default=[])
    a = ap.parse_args(argv)
    settings = KafkaSettings(kafka=a.kafka, topic_prefix=a.prefix)
    import uvloop

    if a.mode == "prefill":
        envelopes = distinct_records([Path(p).read_bytes() for p in a.bodies], a.events, a.vins, a.prefix)
        res: dict[str, object] = uvloop.run(prefill(settings, envelopes))
    else:
        res = uvloop.run(raw(settings, a.events, a.timeout))
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
