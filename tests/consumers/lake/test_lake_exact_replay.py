"""A lake replay gives every event's payload back exactly, so a receiver that derives event ids from
the payload (this project's) computes the original ids again.

The stream goes through the real parser (webhook bodies -> envelopes), a real broker and the real
telemetry worker into real Iceberg tables (SQLite catalog, local warehouse); it is read back with
the lake replay (``LakeSource``) and, end to end, with ``tpipe lake replay --to-url`` into a real
receiver process. A last test writes with the old (pre exact-replay) schema first and checks the
evolution on open and the fallback for the old rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from aiokafka.structs import TopicPartition
from pyiceberg.schema import Schema

from consumers.lake.query import connect, latest, run_sql
from consumers.lake.settings import LakeSettings
from consumers.lake.sink import TableSink
from consumers.lake.tables import TABLES, TABLES_BY_NAME, ensure_tables, load_tables, open_catalog
from consumers.replay.lake_source import LakeSource
from consumers.replay.selection import Selection
from consumers.runtime import WorkerRecord
from plumbing.kafka_clients import ensure_topics
from schemas.envelope import Envelope
from schemas.parse import parse_body
from schemas.topics import all_event_topics, dlq_topic, topic_for
from schemas.validate import validate_event
from tests.support.kafka_broker import broker_settings, produce_envelopes, read_all
from tests.support.lake import LAKE_TYPES, fill_lake, lake_cli
from tests.support.lake_corpus import MIN, VIN_A, nano, parse_stream, sorted_json
from tests.support.processes import TOKEN, new_receiver


@dataclass
class ExactLake:
    settings: LakeSettings
    originals: dict[str, Envelope]  # event_id -> envelope (duplicates collapsed)
    empty_id: str
    t0: int


@pytest.fixture(scope="module")
def exact_lake(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExactLake]:
    tmp = tmp_path_factory.mktemp("exact_lake")
    kafka = broker_settings(kafka_bootstrap, topic_prefix=f"x{uuid.uuid4().hex[:8]}", topic_partitions=3)
    lake = LakeSettings(
        **kafka.model_dump(), catalog_uri=f"sqlite:///{tmp}/catalog.db", warehouse=str(tmp / "warehouse"),
        commit_interval_s=0.3, metrics_port=0,
    )
    t0 = (int(datetime.now(UTC).timestamp() * 1000) // MIN) * MIN - 3 * 60 * MIN
    envs = parse_stream(t0)
    types = {e.type.value for e in envs}
    assert types == set(LAKE_TYPES)
    asyncio.run(ensure_topics(kafka, all_event_topics(kafka.topic_prefix)))
    asyncio.run(produce_envelopes(kafka, envs))
    asyncio.run(fill_lake(lake))
    originals = {e.event_id: e for e in envs}
    assert len(originals) == len(envs) - 1  # one redelivery
    empty_id = next(e.event_id for e in envs if e.type == "data" and e.payload["data"] == {})
    yield ExactLake(lake, originals, empty_id, t0)


def _rebuilt(lake: ExactLake) -> list[Envelope]:
    sel = Selection.build(types=list(LAKE_TYPES), from_ms=lake.t0 - 60 * MIN, to_ms=lake.t0 + 60 * MIN)
    src = LakeSource(lake.settings, sel)
    n = src.load()
    out = [Envelope.from_json(ev.value) for ev in src.events()]
    assert len(out) == n
    return out


@pytest.mark.kafka
def test_lake_replay_rebuilds_every_payload_exactly(exact_lake: ExactLake) -> None:
    rebuilt = _rebuilt(exact_lake)
    assert sorted(e.event_id for e in rebuilt) == sorted(exact_lake.originals)  # nothing lost, nothing twice
    for env in rebuilt:
        orig = exact_lake.originals[env.event_id]
        assert sorted_json(env.payload) == sorted_json(orig.payload), env.event_id  # byte-exact, not just ==
        assert (env.type, env.vin, env.created_at, env.created_at_ms, env.source_format) == (
            orig.type, orig.vin, orig.created_at, orig.created_at_ms, orig.source_format)
        again = parse_body(orjson.dumps(env.payload), received_at_ms=0)
        assert len(again) == 1
        assert again[0].event_id == orig.event_id, (orig.payload, env.payload)
        assert again[0].type == orig.type and again[0].created_at == orig.created_at


@pytest.mark.kafka
def test_typed_columns_stay_and_the_empty_event_is_kept_out_of_the_view(exact_lake: ExactLake) -> None:
    con = connect(exact_lake.settings)
    first = next(e for e in exact_lake.originals.values() if e.payload.get("data", {}).get("BatteryLevel") == 50)
    _, rows = run_sql(con, f"SELECT field, value_double, value_long, value_bool, value_string, value_raw, "
                           f"created_at_text, is_cache FROM telemetry WHERE event_id = '{first.event_id}'")
    got = {r[0]: r[1:] for r in rows}
    assert len(got) == len(first.payload["data"])
    assert got["Odometer"][0] == 10423.6 and got["Odometer"][4] == '"10423.60"'  # typed double, exact text
    assert got["Locked"][2] is True and got["Locked"][4] == '"true"'
    assert got["BatteryLevel"][0] == 50.0 and got["BatteryLevel"][4] == "50"
    # value_raw only where the typed columns would not give the value back exactly
    assert got["VehicleSpeed"][0] == 50.0 and got["VehicleSpeed"][4] is None
    assert got["Gear"][3] == "ShiftStateD" and got["Gear"][4] is None
    assert got["MinutesToArrival"] == (None,) * 5 + got["MinutesToArrival"][5:]
    assert all(r[5] == first.created_at and r[6] is True for r in got.values())
    assert first.created_at.endswith("456789Z")
    # the empty data event: one marker row in the table, none in the analysts' view
    assert run_sql(con, f"SELECT count(*) FROM telemetry WHERE event_id = '{exact_lake.empty_id}'")[1] == [(0,)]
    assert run_sql(con, "SELECT count(*) FROM telemetry WHERE field IS NULL")[1] == [(0,)]
    raw = run_sql(con, f"SELECT field, payload_rest FROM _raw_telemetry WHERE event_id = '{exact_lake.empty_id}'")
    assert raw[1] == [(None, orjson.dumps(
        {k: v for k, v in exact_lake.originals[exact_lake.empty_id].payload.items() if k != "data"}).decode())]
    _, latest_rows = latest(exact_lake.settings, VIN_A)
    assert all(r[0] is not None for r in latest_rows)
    _, st = run_sql(con, "SELECT kind, payload_json FROM vehicle_state ORDER BY created_at")
    assert [k for k, _ in st] == ["state", "connectivity", "state"]
    assert all(p is not None for _, p in st)


@pytest.mark.kafka
def test_lake_replay_to_own_receiver_keeps_every_event_id(
    exact_lake: ExactLake, kafka_bootstrap: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    dst = broker_settings(kafka_bootstrap, topic_prefix=f"y{uuid.uuid4().hex[:8]}", topic_partitions=3)
    lake = exact_lake.settings
    t0 = exact_lake.t0
    receiver = new_receiver(tmp_path, kafka_bootstrap, dst.topic_prefix).start()
    try:
        monkeypatch.setenv("TPIPE_REPLAY_TOKEN", TOKEN)
        capsys.readouterr()
        rc = lake_cli(
            "replay", "--types", ",".join(LAKE_TYPES), "--from", str(t0 - 60 * MIN), "--to", str(t0 + 60 * MIN),
            "--catalog-uri", lake.catalog_uri, "--warehouse", lake.warehouse,
            "--to-url", receiver.url + "/webhook",
        )
        assert rc == 0, receiver.log_tail()
        err = capsys.readouterr().err
        n = len(exact_lake.originals)
        assert f"sent={n}" in err and "id_mismatches=0" in err, err
        asyncio.run(receiver.wait_drained())
    finally:
        receiver.terminate()

    # the receiver validates: the epoch-number createdAt goes to its dead-letter topic (as the original did)
    rejected = {i for i, e in exact_lake.originals.items() if validate_event(e)}
    assert len(rejected) == 1

    async def read_back() -> list[Envelope]:
        out: list[Envelope] = []
        for t in LAKE_TYPES:
            want = sum(1 for i, e in exact_lake.originals.items() if e.type == t and i not in rejected)
            recs = await read_all(dst, topic_for(t, dst.topic_prefix), expected_count=want, timeout=30)
            assert len(recs) == want, t
            out.extend(Envelope.from_json(r.value) for r in recs)
        dlq = await read_all(dst, dlq_topic(dst.topic_prefix), expected_count=len(rejected), timeout=30)
        out.extend(Envelope.from_json(r.value) for r in dlq)
        return out

    got = asyncio.run(read_back())
    assert sorted(e.event_id for e in got) == sorted(exact_lake.originals)  # the receiver's ids = the originals
    for e in got:
        orig = exact_lake.originals[e.event_id]
        assert sorted_json(e.payload) == sorted_json(orig.payload)
        assert (e.created_at, e.created_at_ms, e.vin, e.type) == (orig.created_at, orig.created_at_ms, orig.vin,
                                                                  orig.type)


# --- tables written by the previous version ------------------------------------------------------
_NEW_COLUMNS = {"created_at_text", "source_format", "value_raw", "payload_rest", "payload_json"}


def _old_schema(full: Schema) -> Schema:
    return Schema(*(f for f in full.fields if f.name not in _NEW_COLUMNS))


def _records(envs: list[Envelope], prefix: str, start: int) -> dict[str, list[WorkerRecord]]:
    out: dict[str, list[WorkerRecord]] = {}
    for i, e in enumerate(envs):
        topic = topic_for(e.type, prefix)
        out.setdefault(topic, []).append(WorkerRecord(e, topic, 0, start + i, None, e.to_json()))
    return out


def _write(catalog: Any, namespace: str, tables: dict[str, Any], recs: dict[str, list[WorkerRecord]]) -> None:
    """Through the real sink: buffer, commit with offsets."""
    for tdef in TABLES:
        topics = [topic_for(t, "old") for t in tdef.event_types]
        mine = [r for t in topics for r in recs.get(t, [])]
        if not mine:
            continue
        sink = TableSink(tdef, catalog, namespace, tables[tdef.name], "g", topics, commit_rows=10**6,
                         commit_interval_s=60, dedup_days=2, commit_attempts=3)
        assert sink.add(mine) == ([], 0)
        sink.note_offsets({TopicPartition(r.topic, 0): r.offset + 1 for r in mine})
        assert sink.flush() > 0


def test_old_tables_are_evolved_on_open_and_old_rows_fall_back(tmp_path: Path) -> None:
    s = LakeSettings(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh"), topic_prefix="old")
    catalog = open_catalog(s)
    catalog.create_namespace(s.namespace)
    old_tables = {
        t.name: catalog.create_table((s.namespace, t.name), schema=_old_schema(t.schema),
                                     partition_spec=t.partition_spec(), sort_order=t.sort_order(),
                                     properties={"commit.retry.num-retries": "0"})
        for t in TABLES
    }
    t0 = 1_767_225_600_000  # 2026-01-01
    envs = list({e.event_id: e for e in parse_stream(t0)}.values())
    # the previous version wrote these data events (it wrote no row at all for an empty data object)
    old_envs = [e for e in envs if e.type == "data" and e.created_at_ms < t0 + 5 * MIN and e.payload["data"]]
    old_ids = {e.event_id for e in old_envs}
    new_envs = [e for e in envs if e.event_id not in old_ids]
    # the previous version's writer: the same row builders, the old schema (extra keys are not written)
    _write(catalog, s.namespace, old_tables, _records(old_envs, "old", 0))
    assert "value_raw" not in {f.name for f in load_tables(catalog, s.namespace)["telemetry"].schema().fields}

    # a reader on the old tables still works (the read side never changes the tables)
    sel = Selection.build(types=list(LAKE_TYPES), from_ms=t0 - MIN, to_ms=t0 + 60 * MIN)
    src = LakeSource(s, sel)
    src.load()
    assert {Envelope.from_json(ev.value).event_id for ev in src.events()} == old_ids

    # the new version opens the lake: columns added, nullable, old rows NULL there
    tables = ensure_tables(catalog, s.namespace)
    for t in TABLES:
        have = [f.name for f in tables[t.name].schema().fields]
        assert have == [f.name for f in t.schema.fields]  # same columns, same order as a new table
        assert all(not f.required for f in tables[t.name].schema().fields)
    assert ensure_tables(catalog, s.namespace)["telemetry"].schema() == tables["telemetry"].schema()  # idempotent
    _write(catalog, s.namespace, tables, _records(new_envs, "old", 1000))

    arrow = tables["telemetry"].refresh().scan().to_arrow()
    con = duckdb.connect()
    con.register("t", arrow)
    in_old = ", ".join(f"'{i}'" for i in old_ids)
    assert con.execute(f"SELECT count(*), count(value_raw), count(payload_rest) FROM t WHERE event_id IN ({in_old})"
                       ).fetchone() == (sum(len(e.payload["data"]) for e in old_envs), 0, 0)

    src = LakeSource(s, sel)
    src.load()
    rebuilt = {e.event_id: e for e in (Envelope.from_json(ev.value) for ev in src.events())}
    assert set(rebuilt) == old_ids | {e.event_id for e in new_envs}
    for e in new_envs:  # written by the new version: exact
        assert sorted_json(rebuilt[e.event_id].payload) == sorted_json(e.payload)
        assert parse_body(orjson.dumps(rebuilt[e.event_id].payload), received_at_ms=0)[0].event_id == e.event_id
    first = next(e for e in old_envs if e.payload["data"].get("BatteryLevel") == 50)
    old = rebuilt[first.event_id]  # written before: rebuilt from the typed columns, as documented
    assert old.event_id == first.event_id and old.created_at_ms == first.created_at_ms
    assert old.payload["data"]["BatteryLevel"] == 50.0 and old.payload["data"]["Odometer"] == 10423.6
    assert old.created_at != first.created_at  # nanosecond digits were not kept
    assert parse_body(orjson.dumps(old.payload), received_at_ms=0)[0].event_id != first.event_id
    assert TABLES_BY_NAME["telemetry"].schema.find_field("payload_rest") is not None


# --- the value_raw contract, value by value (pure) ------------------------------------------------
_TRICKY: dict[str, list[Any]] = {
    "VehicleSpeed": [50, 50.0, -0.0, 1e300, "34.797", "50", "abc", True, None, [1, 2], {"a": 1}],
    "Locked": [True, False, "true", "false", 1, 0, "yes", None],
    "Gear": ["ShiftStateD", "D", 4, None],
    "Location": [{"latitude": 37.5, "longitude": -122.25}, {"longitude": "-97.25", "latitude": "30.5"},
                 "37.5,-122.25", {"latitude": None}, None],
    "DoorState": [{"TrunkRear": True, "DriverFront": False}, "DriverFront|TrunkRear", None],
    "Odometer": [2**62, 2**64 - 1, -(2**63), 10423.60, "10423.60", "1e3"],
    "UnknownField": [1, 1.5, "x", "ünï", {"z": [None, {"y": 1.0}]}, [], {}, False],
}


@pytest.mark.parametrize("field", sorted(_TRICKY))
def test_value_raw_or_typed_columns_give_each_value_back_exactly(field: str) -> None:
    from consumers.lake.rows import telemetry_rows, value_from_columns

    for value in _TRICKY[field]:
        env = parse_body(orjson.dumps({"createdAt": nano(1_767_225_600_000), "vin": VIN_A,
                                       "data": {field: value}}), received_at_ms=0)[0]
        (row,) = telemetry_rows(WorkerRecord(env, "z.data", 0, 0, None, env.to_json()))
        back = orjson.loads(row["value_raw"]) if row["value_raw"] is not None else value_from_columns(row)
        assert sorted_json({"v": back}) == sorted_json({"v": value}), (field, value, row)
