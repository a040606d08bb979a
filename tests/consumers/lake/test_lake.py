"""The telemetry worker into real Iceberg tables (SQLite catalog, local warehouse), read back by DuckDB.
The worker runs in this process; ``test_lake_processes.py`` kills and stops it as a real process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiokafka.structs import TopicPartition

from consumers.lake.query import connect, latest, run_sql
from consumers.lake.settings import LakeSettings
from consumers.lake.snapshots import stored_offsets
from consumers.lake.tables import load_tables, open_catalog
from consumers.lake.worker import TelemetryWorker
from consumers.runtime import header_map
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.event_types import EventType, SourceFormat
from schemas.topics import dlq_topic, topic_for
from tests.support.events import BASE_MS, data_event, iso, state_event
from tests.support.kafka_broker import produce, produce_envelopes, read_all
from tests.support.lake import (
    VINS,
    assert_offsets_stored,
    caught_up,
    drive_stream,
    expected_counts,
    lake_settings,
    raw_counts,
    rows_reach,
)
from tests.support.waiting import wait_until
from tests.support.workers import RunningWorker

pytestmark = pytest.mark.kafka


async def test_known_stream_lands_as_exactly_the_expected_rows(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    s = lake_settings(kafka_settings, tmp_path)
    envs = drive_stream(60)
    await produce_envelopes(s, envs)
    r = RunningWorker(TelemetryWorker(s), s).start()
    want = expected_counts(envs)
    await rows_reach(s, want)
    await r.stop()
    assert raw_counts(s) == {k: (v, v) for k, v in want.items()}
    con = connect(s)
    cols, rows = run_sql(con, "SELECT event_id, vin, created_at, field, value_double, value_string, latitude, "
                              "longitude FROM telemetry")
    got = {(r[0], r[3]): r for r in rows}
    for e in envs:
        if e.type is not EventType.DATA:
            continue
        for field, value in e.payload["data"].items():
            row = got[(e.event_id, field)]
            assert row[1] == e.vin
            assert int(row[2].timestamp() * 1000) == e.created_at_ms
            if field in ("Odometer", "VehicleSpeed"):
                assert row[4] == value
            elif field == "Location":
                assert (row[6], row[7]) == (value["latitude"], value["longitude"])
            else:
                assert row[5] == value
    _, st = run_sql(con, "SELECT kind, count(*) FROM vehicle_state GROUP BY kind ORDER BY kind")
    assert st == [("connectivity", 6), ("state", 6)]
    _, vd = run_sql(con, "SELECT json FROM vehicle_data ORDER BY created_at LIMIT 1")
    assert json.loads(vd[0][0]) == {"charge_state": {"battery_level": 52}}
    await assert_offsets_stored(s)


async def test_string_and_null_values_are_coerced(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    s = lake_settings(kafka_settings, tmp_path)
    env = data_event(VINS[0], BASE_MS, {
        "VehicleSpeed": "34.797", "Locked": "true", "Odometer": "10423.6", "Soc": 80,
        "Gear": "ShiftStateD", "MinutesToArrival": None, "BrandNewField": {"x": 1},
        "Location": {"latitude": "30.5", "longitude": "-97.25"}, "DoorState": {"DriverFront": False},
    })
    await produce_envelopes(s, [env])
    r = RunningWorker(TelemetryWorker(s), s).start()
    await rows_reach(s, {"telemetry": 9})
    await r.stop()
    _, rows = run_sql(connect(s), "SELECT field, value_double, value_long, value_bool, value_string, latitude, "
                                  "longitude, value_json FROM telemetry ORDER BY field")
    got = {r[0]: r[1:] for r in rows}
    assert got["VehicleSpeed"] == (34.797, None, None, None, None, None, None)
    assert got["Locked"] == (None, None, True, None, None, None, None)
    assert got["Odometer"] == (10423.6, None, None, None, None, None, None)
    assert got["Soc"][0] == 80.0
    assert got["Gear"] == (None, None, None, "ShiftStateD", None, None, None)
    assert got["MinutesToArrival"] == (None,) * 7  # null kept: the field became null
    assert got["BrandNewField"] == (None, None, None, None, None, None, '{"x":1}')  # unknown fields kept
    assert got["Location"][4:6] == (30.5, -97.25)
    assert json.loads(got["DoorState"][6]) == {"DriverFront": False}


@pytest.mark.parametrize("dedup_max_ids", [10_000_000, 3], ids=["index", "hour-above-bound"])
async def test_duplicate_event_ids_yield_one_set_of_rows(kafka_settings: KafkaSettings, tmp_path: Path,
                                                         dedup_max_ids: int) -> None:
    """Redeliveries dropped exactly, with the hour held in the dedup index and with an hour larger than
    ``--dedup-max-ids`` (then each batch is confirmed against the table)."""
    s = lake_settings(kafka_settings, tmp_path, dedup_max_ids=dedup_max_ids)
    envs = drive_stream(20)
    dup_data = next(e for e in envs if e.type is EventType.DATA)
    dup_state = next(e for e in envs if e.type is EventType.STATE)
    # twice within one batch
    await produce_envelopes(s, [*envs, dup_data, dup_state])
    w = TelemetryWorker(s)
    r = RunningWorker(w, s).start()
    want = expected_counts(envs)
    await rows_reach(s, want)
    # again after the originals are committed (dedup against the table, same process)
    await produce_envelopes(s, [dup_data, dup_state])
    await caught_up(w, s)
    await r.stop()
    # and again after a restart (dedup against the table loaded from disk)
    await produce_envelopes(s, [dup_data, dup_state, *drive_stream(1, start=20)])
    w = TelemetryWorker(s)
    r = RunningWorker(w, s).start()
    await caught_up(w, s)
    await r.stop()
    want["telemetry"] += 5
    assert raw_counts(s) == {k: (v, v) for k, v in want.items()}
    from plumbing import metrics

    assert (metrics.REGISTRY.get_sample_value("tpipe_worker_duplicates_total", {"worker": "telemetry"}) or 0) >= 6


async def test_read_side_dedupes_rows_that_reached_the_table_twice(kafka_settings: KafkaSettings,
                                                                   tmp_path: Path) -> None:
    """Rows appended twice behind the worker's back (another tool, an old writer) still read as one set."""
    s = lake_settings(kafka_settings, tmp_path)
    env = data_event(VINS[1], BASE_MS, {"Odometer": 5.0, "Soc": 50.0})
    await produce_envelopes(s, [env])
    r = RunningWorker(TelemetryWorker(s), s).start()
    await rows_reach(s, {"telemetry": 2})
    await r.stop()
    tbl = load_tables(open_catalog(s), s.namespace)["telemetry"]
    tbl.append(tbl.scan().to_arrow())
    assert raw_counts(s)["telemetry"] == (4, 2)
    _, rows = run_sql(connect(s), "SELECT count(*) FROM telemetry")
    assert rows == [(2,)]
    _, latest_rows = latest(s, VINS[1])
    assert [r[:2] for r in latest_rows] == [("Odometer", "5.0"), ("Soc", "50.0")]


async def test_poison_records_go_to_the_dlq_and_the_worker_continues(kafka_settings: KafkaSettings,
                                                                     tmp_path: Path) -> None:
    s = lake_settings(kafka_settings, tmp_path)
    data_topic = topic_for("data", s.topic_prefix)
    bad = Envelope(event_id="ab" * 16, type=EventType.DATA, vin=VINS[0], created_at=iso(BASE_MS),
                   created_at_ms=BASE_MS, received_at=iso(BASE_MS), received_at_ms=BASE_MS,
                   source_format=SourceFormat.TESLEMETRY, payload={"data": "not an object"})
    before = data_event(VINS[0], BASE_MS + 1, {"Soc": 1.0})
    after = data_event(VINS[0], BASE_MS + 2, {"Soc": 2.0})
    await produce_envelopes(s, [before])
    await produce(s, data_topic, [(VINS[0].encode(), b"{not json")])
    await produce_envelopes(s, [bad, after])
    r = RunningWorker(TelemetryWorker(s), s).start()
    await rows_reach(s, {"telemetry": 2})
    dlq = await read_all(s, dlq_topic(s.topic_prefix), expected_count=2)
    await r.stop()
    assert raw_counts(s)["telemetry"] == (2, 2)
    heads = sorted((header_map(d.headers) for d in dlq), key=lambda h: h["dlq_error_type"])
    assert [h["dlq_error_type"] for h in heads] == ["DecodeError", "PoisonRecordError"]
    assert all(h["dlq_source_topic"] == data_topic and h["dlq_worker"] == "telemetry" for h in heads)
    assert "data object" in heads[1]["dlq_error"]
    assert {d.value for d in dlq} == {b"{not json", bad.to_json()}
    await assert_offsets_stored(s)


async def test_rebalance_two_workers_one_group_one_lake(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    s = lake_settings(kafka_settings, tmp_path)
    first = drive_stream(60)
    await produce_envelopes(s, first)
    ra = RunningWorker(TelemetryWorker(s), s).start()
    await rows_reach(s, expected_counts(first))
    rb = RunningWorker(TelemetryWorker(s), s).start()
    await wait_until(lambda: ra.runtime.assignment and rb.runtime.assignment, timeout=60,
                   what="both workers own partitions")
    second = drive_stream(60, start=60)
    await produce_envelopes(s, second)
    want = expected_counts(first + second)
    await rows_reach(s, want, timeout=90)
    await ra.stop()  # A leaves: B takes over everything and must not re-append A's rows
    third = drive_stream(30, start=120)
    await produce_envelopes(s, third)
    want = expected_counts(first + second + third)
    await rows_reach(s, want, timeout=90)
    await rb.stop()
    assert raw_counts(s) == {k: (v, v) for k, v in want.items()}
    await assert_offsets_stored(s)


def test_stale_writer_is_fenced_and_never_appends_twice(tmp_path: Path) -> None:
    """Two sinks think they own the same partition (a zombie): the table keeps one copy."""
    from consumers.lake.sink import TableSink
    from consumers.lake.tables import TABLES_BY_NAME, ensure_tables
    from consumers.runtime import WorkerRecord

    s = LakeSettings(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh"), topic_prefix="z")
    cat = open_catalog(s)
    tables = ensure_tables(cat, s.namespace)
    assert tables["telemetry"].properties["commit.retry.num-retries"] == "0"

    def sink() -> TableSink:
        return TableSink(TABLES_BY_NAME["telemetry"], cat, s.namespace, cat.load_table(("lake", "telemetry")),
                         "g", ["z.data"], commit_rows=10**6, commit_interval_s=60, dedup_days=2,
                         commit_attempts=3)

    recs = [WorkerRecord(e, "z.data", 0, i, None, e.to_json())
            for i, e in enumerate(data_event(VINS[0], BASE_MS + i, {"Soc": float(i)}) for i in range(10))]
    tp = TopicPartition("z.data", 0)
    zombie, owner = sink(), sink()  # both loaded the same table version
    for sk in (zombie, owner):
        assert sk.add(recs) == ([], 0)
        sk.note_offsets({tp: 10})
    assert owner.flush() == 10
    assert zombie.flush() == 0  # conflict -> reload -> everything already committed -> nothing appended
    assert zombie.durable == {tp: 10}
    # the owner goes on; the zombie, with a partial overlap, appends only what is new
    more = [WorkerRecord(e, "z.data", 0, 10 + i, None, e.to_json())
            for i, e in enumerate(data_event(VINS[0], BASE_MS + 100 + i, {"Soc": float(i)}) for i in range(4))]
    owner.add(more[:2])
    owner.note_offsets({tp: 12})
    assert owner.flush() == 2
    zombie.add(more)
    zombie.note_offsets({tp: 14})
    assert zombie.flush() == 2
    tbl = cat.load_table(("lake", "telemetry"))
    assert tbl.scan().to_arrow().num_rows == 14
    assert stored_offsets(tbl, "g") == {tp: 14}




def test_tables_merge_manifests_and_older_tables_get_the_defaults_they_lack(tmp_path: Path) -> None:
    """New tables merge manifests and never retry on their own; a table made before those defaults gets
    them on open, except what its owner set (a table that says no to merging keeps saying no)."""
    from consumers.lake.tables import TABLES, ensure_tables

    s = LakeSettings(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh"), topic_prefix="z")
    cat = open_catalog(s)
    cat.create_namespace(s.namespace)
    by_name = {t.name: t for t in TABLES}
    for name, props in (("telemetry", {}), ("vehicle_state", {"commit.manifest-merge.enabled": "false"})):
        t = by_name[name]
        cat.create_table((s.namespace, name), schema=t.schema, partition_spec=t.partition_spec(), properties=props)
    tables = ensure_tables(cat, s.namespace)
    got = {name: (tbl.properties.get("commit.manifest-merge.enabled"), tbl.properties.get("commit.retry.num-retries"))
           for name, tbl in tables.items()}
    assert got == {"telemetry": ("true", "0"), "vehicle_state": ("false", "0"), "vehicle_data": ("true", "0")}


def test_expired_snapshots_keep_every_partitions_stored_offset_and_all_rows(tmp_path: Path) -> None:
    """Commits beyond twice ``keep_snapshots`` expire old snapshots; an idle partition's offset, stored
    only in an old snapshot, survives; every row is still read back (DuckDB over the current snapshot)."""
    from consumers.lake.sink import TableSink
    from consumers.lake.snapshots import expirable, expire_snapshots, history, offsets_key
    from consumers.lake.tables import TABLES_BY_NAME, ensure_tables
    from consumers.runtime import WorkerRecord

    s = LakeSettings(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh"), topic_prefix="z")
    cat = open_catalog(s)
    ensure_tables(cat, s.namespace)
    sink = TableSink(TABLES_BY_NAME["telemetry"], cat, s.namespace, cat.load_table(("lake", "telemetry")),
                     "g", ["z.data"], commit_rows=10**6, commit_interval_s=60, dedup_days=2,
                     commit_attempts=3, keep_snapshots=3)
    idle, busy = TopicPartition("z.data", 0), TopicPartition("z.data", 1)

    def stored_offsets_in(snap: Any) -> Any:
        return json.loads(snap.summary.additional_properties[offsets_key("g")])

    def commit(tp: TopicPartition, offset: int, ms: int) -> None:
        env = data_event(VINS[tp.partition], ms, {"Soc": float(offset)})
        assert sink.add([WorkerRecord(env, tp.topic, tp.partition, offset, None, env.to_json())]) == ([], 0)
        sink.note_offsets({tp: offset + 1})
        assert sink.flush() == 1

    commit(idle, 0, BASE_MS)
    for i in range(20):
        commit(busy, i, BASE_MS + 1000 + i)
    tbl = cat.load_table(("lake", "telemetry"))
    assert len(tbl.metadata.snapshots) < 2 * 3, "expired down to the newest three (+ the idle partition's)"
    assert stored_offsets(tbl, "g") == {idle: 1, busy: 20}
    expire_snapshots(tbl, 3)  # down to exactly: the newest three and the idle partition's
    left = list(history(tbl))
    assert len(left) == 4 and expirable(tbl, 3) == []
    assert [stored_offsets_in(snap) for snap in left[3:]] == [{"z.data": {"0": 1}}]
    assert sink.load_positions([idle, busy]) == {idle: 1, busy: 20}
    con = duckdb.connect()
    con.register("t", tbl.scan().to_arrow())
    assert con.execute("select count(*), count(distinct event_id) from t").fetchone() == (21, 21)
    # the expired snapshots' manifest lists and manifests are gone; every file left is referenced
    referenced = set()
    for snap in tbl.metadata.snapshots:
        referenced.add(Path(snap.manifest_list.removeprefix("file://")).name)
        referenced.update(Path(m.manifest_path.removeprefix("file://")).name for m in snap.manifests(tbl.io))
    on_disk = {f.name for f in (tmp_path / "wh").rglob("*.avro")}
    assert on_disk == referenced, (sorted(on_disk - referenced), sorted(referenced - on_disk))
    assert len(list((tmp_path / "wh").rglob("*.parquet"))) == 21, "every data file stays"


async def test_cli_latest_sql_and_mistyped_values(kafka_settings: KafkaSettings, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from plumbing.metrics import LAKE_VALUES_MISTYPED
    from tpipe.cli import main

    def mistyped(field: str) -> float:
        return LAKE_VALUES_MISTYPED.labels(field)._value.get()

    s = lake_settings(kafka_settings, tmp_path)
    envs = [
        data_event(VINS[2], BASE_MS, {"Odometer": "100.5", "Gear": "ShiftStateP"}),
        data_event(VINS[2], BASE_MS + 1000, {"Odometer": 101.25}),
        state_event(VINS[2], BASE_MS + 2000, "online"),
        # values whose JSON type is not their catalogued field's: kept, counted, listed
        data_event(VINS[1], BASE_MS + 3000, {"Odometer": {"x": [1]}, "BatteryLevel": "unknown", "Locked": 5,
                                             "Location": 12, "VehicleSpeed": 7, "Gear": 3}),
    ]
    before = {f: mistyped(f) for f in ("Odometer", "BatteryLevel", "Locked", "Location", "VehicleSpeed", "Gear")}
    await produce_envelopes(s, [*envs, envs[-1]])  # a redelivery is not counted twice
    r = RunningWorker(TelemetryWorker(s), s).start()
    await rows_reach(s, {"telemetry": 9, "vehicle_state": 1})
    await r.stop()
    grew = {f: mistyped(f) - n for f, n in before.items()}
    assert grew == {"Odometer": 1, "BatteryLevel": 1, "Locked": 1, "Location": 1, "VehicleSpeed": 0, "Gear": 0}

    flags = ["--catalog-uri", s.catalog_uri, "--warehouse", s.warehouse]
    assert await asyncio.to_thread(main, ["lake", "latest", VINS[2], *flags]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.strip()}
    assert "101.25" in lines["Odometer"] and "ShiftStateP" in lines["Gear"] and "online" in lines["state"]
    assert await asyncio.to_thread(
        main, ["lake", "sql", "SELECT vin, count(*) AS n FROM telemetry GROUP BY vin ORDER BY vin", *flags]) == 0
    out = capsys.readouterr().out
    assert VINS[2] in out and "(2 rows)" in out
    assert await asyncio.to_thread(main, ["lake", "sql", "SELECT NULL AS a", *flags]) == 0
    assert "NULL" in capsys.readouterr().out
    query = "SELECT field, expected, sent_as, value FROM mistyped_values ORDER BY field"
    assert await asyncio.to_thread(main, ["lake", "sql", query, "--format", "json", *flags]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"field": "BatteryLevel", "expected": "double", "sent_as": "string", "value": '"unknown"'},
        {"field": "Location", "expected": "location", "sent_as": "number", "value": "12"},
        {"field": "Locked", "expected": "bool", "sent_as": "number", "value": "5"},
        {"field": "Odometer", "expected": "double", "sent_as": "object", "value": '{"x":[1]}'},
    ]
    assert await asyncio.to_thread(main, ["lake", "sql", "SELECT broken FROM", *flags]) == 2
    assert "query failed" in capsys.readouterr().err
