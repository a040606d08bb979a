"""A lake of N telemetry rows for the console's timing, written by the real telemetry worker's code.

    python -m bench.console_lake --catalog-uri sqlite:///DIR/catalog.db --warehouse DIR/wh --rows 1000000

Events are realistic drives: ``vins`` vehicles over ``days`` days ending now, one ``data`` event every
few seconds per vehicle with ten fields (speed, battery, location moving along a line, odometer,
gear, temperatures, range, charge state). They go through ``TelemetryWorker.handle`` and
``checkpoint`` exactly as the worker runs them (rows built a batch at a time, one Parquet file per
day and commit, the offsets in the snapshot), only without Kafka: the records carry made-up offsets
of one partition. Prints one JSON object (rows, events, seconds, the VINs and the time span).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from typing import Any

import orjson

from schemas.parse import parse_body
from schemas.times import ms_to_iso

FIELDS_PER_EVENT = 10
_GEARS = ("ShiftStateD", "ShiftStateD", "ShiftStateD", "ShiftStateP")


def vin_of(i: int) -> str:
    return f"5YJ3CONSOLE{i:06d}"


def event_body(vin_index: int, seq: int, ms: int) -> bytes:
    """One ``data`` event of vehicle ``vin_index`` at ``ms`` (its ``seq``-th): a slow loop round a town."""
    angle = seq / 400.0 + vin_index
    speed = round(abs(math.sin(seq / 50.0)) * 110.0, 1)
    battery = round(95.0 - (seq % 3000) / 3000 * 70.0, 1)
    return orjson.dumps({
        "createdAt": ms_to_iso(ms),
        "vin": vin_of(vin_index),
        "data": {
            "VehicleSpeed": speed,
            "BatteryLevel": battery,
            "Location": {"latitude": round(52.09 + 0.05 * math.sin(angle), 6),
                         "longitude": round(5.12 + 0.08 * math.cos(angle), 6)},
            "Odometer": round(12000 + seq * 0.02, 3),
            "Gear": _GEARS[seq % len(_GEARS)],
            "InsideTemp": round(21 + math.sin(seq / 90.0), 1),
            "OutsideTemp": round(12 + 4 * math.sin(seq / 700.0), 1),
            "EstBatteryRange": round(battery * 3.4, 1),
            "DetailedChargeState": "DetailedChargeStateDisconnected",
            "Soc": battery,
        },
    })


async def fill(catalog_uri: str, warehouse: str, rows: int, vins: int, days: float, *,
               topic_prefix: str = "teslemetry") -> dict[str, Any]:
    from consumers.lake.settings import LakeSettings
    from consumers.lake.worker import TelemetryWorker
    from consumers.runtime import WorkerRecord
    from schemas.topics import headers_for, key_for, topic_for

    settings = LakeSettings(catalog_uri=catalog_uri, warehouse=warehouse, topic_prefix=topic_prefix,
                            commit_rows=500_000, keep_snapshots=20)
    worker = TelemetryWorker(settings)
    await worker.start()
    events = max(1, rows // FIELDS_PER_EVENT)
    per_vin = max(1, events // vins)
    now = int(time.time() * 1000)
    start = now - int(days * 86_400_000)
    step = max(1, int(days * 86_400_000) // per_vin)
    topic = topic_for("data", topic_prefix)
    t0 = time.perf_counter()
    offset = 0
    batch: list[WorkerRecord] = []
    try:
        for seq in range(per_vin):
            for v in range(vins):
                ms = start + seq * step + v * 37
                for env in parse_body(event_body(v, seq, ms), received_at_ms=ms + 500):
                    value = env.to_json()
                    batch.append(WorkerRecord(env, topic, 0, offset, key_for(env), value,
                                              tuple(headers_for(env)), env.created_at_ms))
                    offset += 1
            if len(batch) >= 5000:
                await _apply(worker, batch, offset)
                batch = []
        if batch:
            await _apply(worker, batch, offset)
        await worker.checkpoint(_offsets(topic, offset), force=True)
    finally:
        await worker.stop()
    return {"rows": offset * FIELDS_PER_EVENT, "events": offset, "vins": [vin_of(v) for v in range(vins)],
            "first_ms": start, "last_ms": start + (per_vin - 1) * step, "seconds": round(time.perf_counter() - t0, 1)}


def _offsets(topic: str, next_offset: int) -> Any:
    from aiokafka.structs import TopicPartition

    return {TopicPartition(topic, 0): next_offset}


async def _apply(worker: Any, batch: list[Any], next_offset: int) -> None:
    failures = await worker.handle(batch)
    if failures:
        raise RuntimeError(f"{len(failures)} records failed: {failures[0]}")
    await worker.checkpoint(_offsets(batch[0].topic, next_offset), force=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console_lake", description=__doc__.splitlines()[0])
    p.add_argument("--catalog-uri", required=True)
    p.add_argument("--warehouse", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--vins", type=int, default=20)
    p.add_argument("--days", type=float, default=3.0)
    a = p.parse_args(argv)
    out = asyncio.run(fill(a.catalog_uri, a.warehouse, a.rows, a.vins, a.days))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
