"""The Iceberg lake in tests: a realistic stream for it, its settings on a test's broker and
``tmp_path``, its rows counted straight from Iceberg, filled by the real telemetry worker, and
``tpipe lake`` run in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from consumers.lake.settings import LakeCatalogSettings, LakeSettings
from consumers.lake.snapshots import stored_offsets
from consumers.lake.tables import load_tables, open_catalog
from consumers.lake.worker import TelemetryWorker
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.event_types import EventType
from schemas.topics import topic_for
from tests.support.events import BASE_MS, data_event, event, iso, state_event
from tests.support.kafka_broker import committed_offsets, end_offsets
from tests.support.waiting import wait_until
from tests.support.workers import RunningWorker, worker_settings
from tpipe.cli import main as tpipe_main

#: the event types the lake keeps (its tables: telemetry, vehicle_state, vehicle_data)
LAKE_TYPES = ("data", "state", "connectivity", "vehicle_data")
VINS = [f"5YJ3E1EA{n:09d}" for n in range(3)]


def lake_settings(kafka_settings: KafkaSettings, tmp_path: Path, **fields: Any) -> LakeSettings:
    base: dict[str, Any] = {
        "catalog_uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": str(tmp_path / "warehouse"),
        "commit_rows": 200, "commit_interval_s": 0.3,
    }
    base.update(fields)
    return worker_settings(kafka_settings, LakeSettings, **base)  # type: ignore[no-any-return]


def raw_counts(s: LakeCatalogSettings) -> dict[str, tuple[int, int]]:
    """Per table: (rows, distinct logical rows) straight from Iceberg, without the dedup views."""
    tables = load_tables(open_catalog(s), s.namespace)
    out = {}
    for name, tbl in tables.items():
        arrow = tbl.scan().to_arrow()
        key = "event_id, field" if name == "telemetry" else "event_id"
        con = duckdb.connect()
        con.register("t", arrow)
        row = con.execute(f"SELECT count(*), count(DISTINCT ({key})) FROM t").fetchone()
        assert row is not None
        out[name] = (int(row[0]), int(row[1]))
    return out


def drive_stream(n_events: int, start: int = 0) -> list[Envelope]:
    """A small realistic stream: per VIN, driving then charging, plus states/connectivity/snapshots."""
    out: list[Envelope] = []
    for i in range(start, start + n_events):
        vin = VINS[i % len(VINS)]
        ms = BASE_MS + i * 60_000
        k = i // len(VINS)
        if i % 10 == 9:
            out.append(state_event(vin, ms, "online" if k % 2 else "asleep"))
        elif i % 10 == 8:
            out.append(event({"createdAt": iso(ms), "vin": vin, "networkInterface": "cellular",
                              "status": "CONNECTED" if k % 2 else "DISCONNECTED"}))
        elif i % 10 == 7:
            out.append(event({"createdAt": iso(ms), "vin": vin,
                              "vehicle_data": {"charge_state": {"battery_level": 50 + k % 40}}}))
        else:
            out.append(data_event(vin, ms, {
                "Odometer": 1000.0 + k * 1.5, "VehicleSpeed": float(k % 70), "Gear": "ShiftStateD",
                "Location": {"latitude": 37.0 + k / 1000, "longitude": -122.0 - k / 1000},
                "DetailedChargeState": "DetailedChargeStateCharging" if k % 20 < 5 else
                "DetailedChargeStateDisconnected",
            }))
    return out


def expected_counts(envs: list[Envelope]) -> dict[str, int]:
    out = {"telemetry": 0, "vehicle_state": 0, "vehicle_data": 0}
    for e in envs:
        if e.type is EventType.DATA:
            out["telemetry"] += len(e.payload["data"])
        elif e.type in (EventType.STATE, EventType.CONNECTIVITY):
            out["vehicle_state"] += 1
        else:
            out["vehicle_data"] += 1
    return out


async def rows_reach(s: LakeCatalogSettings, want: dict[str, int], timeout: float = 60.0) -> None:
    def check() -> bool:
        counts = raw_counts(s)
        return all(counts.get(k, (0, 0))[0] >= v for k, v in want.items())

    await wait_until(check, f"lake rows {want}", timeout=timeout, interval=0.3, in_thread=True)


async def caught_up(w: TelemetryWorker, s: LakeSettings, timeout: float = 60.0) -> None:
    """Wait until the worker's tables store the end offsets of all its topics."""
    ends: dict[TopicPartition, int] = {}
    for t in w.event_types:
        ends.update({tp: o for tp, o in (await end_offsets(s, topic_for(t, s.topic_prefix))).items() if o})

    def done() -> bool:
        durable: dict[TopicPartition, int] = {}
        for sk in w.sinks.values():
            durable.update(sk.durable)
        return all(durable.get(tp) == o for tp, o in ends.items())

    await wait_until(done, timeout=timeout, what="the lake caught up with the topics")


async def assert_offsets_stored(s: LakeSettings) -> None:
    """Every table stores, for its topics, the end offsets of the stream (and Kafka has them too)."""
    tables = load_tables(open_catalog(s), s.namespace)
    group = s.group_for("telemetry")
    ends: dict[TopicPartition, int] = {}
    for t in ("data", "state", "connectivity", "vehicle_data"):
        ends.update({tp: o for tp, o in (await end_offsets(s, topic_for(t, s.topic_prefix))).items() if o})
    stored: dict[TopicPartition, int] = {}
    for tbl in tables.values():
        stored.update(stored_offsets(tbl, group))
    assert {tp: o for tp, o in stored.items() if o} == ends
    committed = await committed_offsets(s, group)
    assert {tp: o for tp, o in committed.items() if o} == ends


async def fill_lake(settings: LakeSettings, timeout: float = 120.0) -> None:
    """Run the telemetry worker until its consumer group has committed the end of every lake topic
    (the topics must exist), then stop it (a drain)."""
    ends: dict[TopicPartition, int] = {}
    for t in LAKE_TYPES:
        ends.update(await end_offsets(settings, topic_for(t, settings.topic_prefix)))
    worker = RunningWorker(TelemetryWorker(settings), settings).start()
    assert worker.task is not None

    async def caught_up() -> bool:
        if worker.task is not None and worker.task.done():
            worker.task.result()  # the worker's error, if it died
            raise AssertionError("the telemetry worker stopped before the lake caught up")
        try:
            committed = await committed_offsets(settings, settings.group_for("telemetry"))
        except KafkaError as exc:  # e.g. the group coordinator still loading on a fresh broker
            if not exc.retriable:
                raise
            return False
        return all(end == 0 or committed.get(tp, -1) >= end for tp, end in ends.items())

    try:
        await wait_until(caught_up, "the lake to catch up with its topics", timeout=timeout, interval=0.2)
    finally:
        await worker.stop()


def lake_cli(*argv: str) -> int:
    """``tpipe lake <argv>`` in-process (``tpipe.cli.main``): its exit code."""
    return tpipe_main(["lake", *argv])
