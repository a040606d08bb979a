"""Forwarder throughput, spool -> Kafka, and its baseline: a raw aiokafka producer loop.

    python -m bench.forward --kafka HOST:PORT --prefix P --events 60000 --mode forwarder|raw BODY...

``forwarder``: pre-fill a fresh spool with N webhook bodies as the receiver stores them (raw body
frames, through the Spool API; not timed), then time ``ingest.forward.forwarder.Forwarder`` draining it to the
broker: read, parse, validate, build each record, publish, advance the cursor — all the per-event work
the receiver's request path no longer does.
``raw``: the same N records, already built in memory, sent with one ``await producer.send()`` each
and all acknowledgements awaited. Both use the receiver's producer (``plumbing.kafka_clients.producer_config``
via ``make_producer(role="forwarder")``), started and with topic metadata loaded before timing.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from ingest.records import KafkaRecord as SpoolRecord
from ingest.records import RecordBuilder
from ingest.settings import IngestSettings
from ingest.spool.frame import encode as encode_raw
from plumbing import kafka_clients
from schemas import topics
from schemas.parse import parse_body
from schemas.validate import compile_all, validate_event

perf = time.perf_counter


def make_frames(bodies: list[bytes], events: int, vins: int, prefix: str) -> tuple[list[bytes], list[SpoolRecord]]:
    """N raw body frames cycling over len(bodies) x vins distinct one-event bodies (VINs spread the
    partitions), and the N records the forwarder builds from them (the raw loop's input)."""
    builder = RecordBuilder(prefix, validate_event)
    raw: list[bytes] = []
    built: list[SpoolRecord] = []
    now = int(time.time() * 1000)
    for v in range(vins):
        vin = f"5YJ3BENCH{v:08d}"
        for b in bodies:
            obj = orjson.loads(b)
            if "vin" in obj:
                obj["vin"] = vin
            body = orjson.dumps(obj)
            raw.append(encode_raw(body, now))
            built.extend(builder.record(env)[0] for env in parse_body(body, received_at_ms=now))
    assert len(raw) == len(built), "one event per bench body"
    return [raw[i % len(raw)] for i in range(events)], [built[i % len(built)] for i in range(events)]


async def _producer(settings: IngestSettings, records: list[SpoolRecord]):  # type: ignore[no-untyped-def]
    """The receiver's producer, started, with every partition the records go to led and written once."""
    await kafka_clients.ensure_topics(settings, topics.all_topics(settings.topic_prefix))
    producer = kafka_clients.make_producer(
        settings, role="forwarder", request_timeout_ms=int(settings.broker_timeout_s * 1000)
    )
    await producer.start()
    used = {r.topic for r in records[:5000]}
    for t in sorted(used):
        for p in sorted(await producer.partitions_for(t)):
            await producer.send_and_wait(t, b"{}", key=b"bench-warmup", partition=p)
    return producer


async def run_forwarder(
    settings: IngestSettings, frames: list[bytes], records: list[SpoolRecord], spool_dir: Path, profile: str | None
) -> dict:
    from ingest.forward.forwarder import Forwarder
    from ingest.spool.log import Spool

    spool = Spool(spool_dir, max_bytes=8 << 30, segment_bytes=settings.spool_segment_bytes)
    spool.open()
    spool.start()
    for i in range(0, len(frames), 1000):
        await spool.append(frames[i : i + 1000])
    producer = await _producer(settings, records)

    async def factory():  # type: ignore[no-untyped-def]
        return producer

    builder = RecordBuilder(settings.topic_prefix, validate_event)
    fw = Forwarder(spool, factory, builder, batch_events=settings.forward_batch_events,
                   max_inflight=settings.forward_inflight_chunks, gather_bytes=settings.forward_gather_bytes)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    if os.environ.get("BENCH_CALLGRIND"):  # under valgrind: count only the drain (bench.receiver_profile)
        subprocess.run(["callgrind_control", "-z", str(os.getpid())], check=True, capture_output=True)
    t0 = perf()
    task = asyncio.get_running_loop().create_task(fw.run())
    drained = await fw.drain(600)
    elapsed = perf() - t0
    if os.environ.get("BENCH_CALLGRIND"):
        subprocess.run(["callgrind_control", "-d", str(os.getpid())], check=True, capture_output=True)
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    fw.stop()
    await task
    await producer.stop()
    await spool.close()
    return {"drained": drained, "forwarded": fw.forwarded, "seconds": elapsed}


async def run_raw(settings: IngestSettings, records: list[SpoolRecord]) -> dict:
    producer = await _producer(settings, records)
    t0 = perf()
    send = producer.send
    futs = [
        await send(r.topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms) for r in records
    ]
    for res in await asyncio.gather(*futs, return_exceptions=True):
        if isinstance(res, BaseException):
            raise res
    elapsed = perf() - t0
    await producer.stop()
    return {"forwarded": len(records), "seconds": elapsed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--vins", type=int, default=200)
    ap.add_argument("--mode", choices=("forwarder", "raw"), required=True)
    ap.add_argument("--profile", default=None, help="write cProfile stats of the timed section here")
    ap.add_argument("bodies", nargs="+")
    a = ap.parse_args(argv)
    settings = IngestSettings(kafka=a.kafka, topic_prefix=a.prefix)
    bodies = [Path(p).read_bytes() for p in a.bodies]
    compile_all()
    frames, records = make_frames(bodies, a.events, a.vins, a.prefix)
    nbytes = sum(map(len, frames))
    import uvloop

    if a.mode == "forwarder":
        tmp = Path(tempfile.mkdtemp(prefix="tpipe-bench-spool-"))
        try:
            res = uvloop.run(run_forwarder(settings, frames, records, tmp / "spool", a.profile))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        res = uvloop.run(run_raw(settings, records))
    res.update(mode=a.mode, events=a.events, frame_bytes=nbytes, events_per_s=a.events / res["seconds"])
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
