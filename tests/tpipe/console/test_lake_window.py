"""The Vehicle page's window read once (``tpipe.console.lake_window``) holds exactly the rows of the query
layer's ``telemetry`` view — also when rows reached the table twice behind the writer's back — and the
page's answers (latest values, chart and route points) are the same either way. A real Iceberg lake,
written by the telemetry worker's own code."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from aiokafka.structs import TopicPartition

from consumers.lake.query import LATEST_SQL, connect
from consumers.lake.readonly import open_lake
from consumers.lake.settings import LakeSettings
from consumers.lake.worker import TelemetryWorker
from consumers.runtime import WorkerRecord
from schemas.topics import headers_for, key_for, topic_for
from tests.support.events import BASE_MS, data_event, state_event
from tpipe.console.lake_window import COLUMNS, read_once
from tpipe.console.pages.vehicle import SERIES_SQL

VIN, OTHER = "5YJ3WINDOW0000001", "5YJ3WINDOW0000002"
SINCE, UNTIL = datetime.fromtimestamp(BASE_MS / 1000, UTC), datetime.fromtimestamp((BASE_MS + 86_400_000) / 1000, UTC)
ORDERED = f"SELECT {', '.join(COLUMNS)} FROM telemetry ORDER BY event_id, field"


async def _write(s: LakeSettings) -> None:
    """Two cars, a few minutes of driving each, through the worker's handle and checkpoint (no Kafka)."""
    envs = [data_event(vin, BASE_MS + i * 60_000, {"VehicleSpeed": 10.0 + i, "BatteryLevel": 80.0 - i,
                                                   "Location": {"latitude": 52.0 + i / 100, "longitude": 5.0}})
            for i in range(30) for vin in (VIN, OTHER)]
    envs.append(state_event(VIN, BASE_MS + 5_000, "online"))
    worker = TelemetryWorker(s)
    await worker.start()
    try:
        records = [WorkerRecord(env, topic_for(env.type, s.topic_prefix), 0, offset, key_for(env), env.to_json(),
                                tuple(headers_for(env)), env.created_at_ms) for offset, env in enumerate(envs)]
        assert await worker.handle(records) == []
        ends = {TopicPartition(topic_for(t, s.topic_prefix), 0): len(envs) for t in ("data", "state")}
        await worker.checkpoint(ends, force=True)
    finally:
        await worker.stop()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> LakeSettings:
    tmp = tmp_path_factory.mktemp("lake-window")
    s = LakeSettings(catalog_uri=f"sqlite:///{tmp / 'catalog.db'}", warehouse=str(tmp / "warehouse"))
    asyncio.run(_write(s))
    return s


def _answers(con: Any) -> tuple[list[Any], list[Any]]:
    latest = con.execute(LATEST_SQL, {"vin": VIN}).fetchall()
    series = con.execute(SERIES_SQL + " ORDER BY field, t", {"fields": ["BatteryLevel", "VehicleSpeed"],
                                                            "points": 20_000}).fetchall()
    return latest, series


def _both(s: LakeSettings, vin: str | None = VIN) -> tuple[Any, Any]:
    views = connect(s, vin=vin, since=SINCE, until=UNTIL, tables=("telemetry", "vehicle_state"))
    once = connect(s, vin=vin, since=SINCE, until=UNTIL, tables=("telemetry", "vehicle_state"))
    read_once(once)
    return views, once


def test_the_window_read_once_is_the_views_window(lake: LakeSettings) -> None:
    views, once = _both(lake)
    want = views.execute(ORDERED).fetchall()
    assert len(want) == 90 and once.execute(ORDERED).fetchall() == want
    assert _answers(once) == _answers(views)
    assert ("state", "online") in [r[:2] for r in _answers(once)[0]]


def test_rows_written_twice_are_read_once_by_the_same_rule(lake: LakeSettings, tmp_path: Path) -> None:
    tbl = open_lake(lake)["telemetry"]
    rows = tbl.scan().to_arrow()
    mine = rows.filter(pc.equal(rows["vin"], VIN)).slice(0, 40)  # the first copies of 40 of the car's rows
    later = mine.set_column(mine.schema.get_field_index("kafka_offset"), "kafka_offset",
                            pa.array([o + 1000 for o in mine["kafka_offset"].to_pylist()], pa.int64()))
    earlier = mine.set_column(mine.schema.get_field_index("kafka_offset"), "kafka_offset",
                              pa.array([-1] * len(mine), pa.int64()))
    tbl.append(later.cast(tbl.schema().as_arrow()))
    tbl.append(earlier.cast(tbl.schema().as_arrow()))  # an earlier position wins: its offset is what the view keeps
    views, once = _both(lake)
    raw = views.execute("SELECT count(*) FROM _raw_telemetry WHERE field IS NOT NULL").fetchone()
    assert raw is not None and raw[0] == 90 + 80
    want = views.execute(ORDERED).fetchall()
    assert len(want) == 90 and once.execute(ORDERED).fetchall() == want
    assert sorted(r[COLUMNS.index("kafka_offset")] for r in want).count(-1) == 40
    assert _answers(once) == _answers(views)


def test_an_empty_window(lake: LakeSettings) -> None:
    views, once = _both(lake, vin="5YJ3NOTHERE000000")
    assert once.execute(ORDERED).fetchall() == [] == views.execute(ORDERED).fetchall()
    assert _answers(once) == _answers(views) == ([], [])
