"""Several ``tpipe consume telemetry`` processes in one consumer group, exactly once, on a PostgreSQL
SQL catalog (the production set-up of docs/operations.md "Scaling out").

A stream of data, state, connectivity and vehicle_data events (with redeliveries: the same event at
a later offset) is produced at a steady rate while the group churns: two workers share it, one is
SIGKILLed and started again, a third joins and leaves. Afterwards the lake holds every event once
(distinct event_ids = events sent, no duplicate (event_id, field) row), each table's stored offsets
and the group's committed offsets equal the end offsets, and the workers' commit conflicts are
counted (``pytest -m cluster -s`` prints ``CLUSTER FIGURES lake_group``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiokafka.structs import TopicPartition
from pyiceberg.table import Table

from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.snapshots import stored_offsets
from consumers.lake.tables import TABLES, load_tables, open_catalog
from localbroker import LocalCluster
from plumbing.kafka_clients import ensure_topics
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.parse import parse_object
from schemas.times import format_ms, now_ms
from schemas.topics import all_event_topics, topic_for
from tests.support.cluster_ops import committed_offsets, end_offsets
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401
from tests.support.worker_processes import churn_group, produce_paced, wait_for, worker_starter

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.postgres]

VINS = [f"5YJ3E1EA{n:09d}" for n in range(12)]
EVENTS = 9000  # distinct events
RATE = 200.0  # records per second: the stream outlasts the churn (about 30 s); the rest goes at once


def telemetry_stream(n: int, start_ms: int) -> list[Envelope]:
    """``n`` distinct events over 12 VINs, 30 s apart (a day and a half: two or three day partitions)."""
    out: list[Envelope] = []
    for i in range(n):
        vin, t = VINS[i % len(VINS)], start_ms + i * 30_000
        created = format_ms(t, "")
        obj: dict[str, Any]
        if i % 10 == 3:
            obj = {"createdAt": created, "vin": vin, "state": "online" if i % 20 == 3 else "asleep"}
        elif i % 10 == 7:
            obj = {"createdAt": created, "vin": vin, "networkInterface": "wifi", "status": "CONNECTED",
                   "connectionId": f"c-{i}"}
        elif i % 50 == 9:
            obj = {"createdAt": created, "vin": vin,
                   "vehicle_data": {"vin": vin, "state": "online", "charge_state": {"battery_level": i % 100}}}
        else:
            obj = {"createdAt": created, "vin": vin,
                   "data": {"VehicleSpeed": i % 120, "BatteryLevel": 20 + i % 80, "Odometer": 1000 + i / 10}}
        out.extend(parse_object(obj, received_at_ms=t + 400))
    return out


def with_redeliveries(envs: list[Envelope], every: int = 40, back: int = 100) -> list[Envelope]:
    """Every ``every`` events, one sent ``back`` events earlier comes again (same event_id, new offset)."""
    out: list[Envelope] = []
    for i, e in enumerate(envs):
        out.append(e)
        if i % every == every - 1 and i >= back:
            out.append(envs[i - back])
    return out


def _table_topics(prefix: str) -> dict[str, list[str]]:
    return {t.name: [topic_for(et, prefix) for et in t.event_types] for t in TABLES}


def _lake_caught_up(catalog_settings: LakeCatalogSettings, group: str, ends: dict[TopicPartition, int],
                    prefix: str) -> bool:
    """Every table stores, for the group, the end offset of each non-empty partition of its topics."""
    try:
        tables = load_tables(open_catalog(catalog_settings), catalog_settings.namespace)
    except Exception:  # the catalog is being created by the workers
        return False
    for name, topics in _table_topics(prefix).items():
        want = {tp: off for tp, off in ends.items() if tp.topic in topics and off > 0}
        if not want:
            continue
        if name not in tables or stored_offsets(tables[name], group, list(want)) != want:
            return False
    return True


def _counts(table: Table, columns: tuple[str, ...]) -> tuple[int, int, int]:
    """(rows, distinct event_ids, distinct ``columns`` tuples) of the table as written (no read-side dedup)."""
    arrow = table.scan(selected_fields=columns).to_arrow()
    con = duckdb.connect()
    con.register("t", arrow)
    keys = ", ".join(columns)
    row = con.execute(f"SELECT count(*), count(DISTINCT event_id), (SELECT count(*) FROM (SELECT DISTINCT {keys} FROM t)) "
                      "FROM t").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def test_telemetry_workers_share_a_group_exactly_once_through_kills_and_rebalances(
    cluster: LocalCluster, cluster_settings: KafkaSettings, postgres_url: str, tmp_path: Path  # noqa: F811
) -> None:
    s, prefix = cluster_settings, cluster_settings.topic_prefix
    catalog_uri = fresh_database(postgres_url, "tpipe_lake").replace("postgresql://", "postgresql+psycopg2://", 1)
    catalog_settings = LakeCatalogSettings(catalog_uri=catalog_uri, warehouse=str(tmp_path / "warehouse"))
    group = f"{prefix}.telemetry"
    await ensure_topics(s, all_event_topics(prefix))  # RF 3, min.insync.replicas 2 (fitted to the cluster)
    distinct = telemetry_stream(EVENTS, now_ms() - 2 * 86_400_000)
    stream = with_redeliveries(distinct)

    start = worker_starter(tmp_path, "telemetry", s, "--catalog-uri", catalog_uri, "--warehouse",
                           str(tmp_path / "warehouse"), "--commit-interval-s", "1")
    workers, churn = await churn_group(start, lambda hurry: produce_paced(s, stream, RATE, hurry))
    sent = churn.produced
    ends = await end_offsets(s, all_event_topics(prefix))
    caught_up_s = await wait_for(lambda: _lake_caught_up(catalog_settings, group, ends, prefix),
                                 "the lake to store every end offset", workers=workers)
    churn.note("lake caught up")
    for w in workers:
        assert await asyncio.to_thread(w.terminate) == 0, w.tail()
    committed = await committed_offsets(s, group)

    tables = load_tables(open_catalog(catalog_settings), catalog_settings.namespace)
    by_type: dict[str, set[str]] = {}
    for e in distinct:
        by_type.setdefault(e.type.value, set()).add(e.event_id)
    data_rows = sum(len(e.payload["data"]) for e in distinct if e.type.value == "data")
    tel = _counts(tables["telemetry"], ("event_id", "field"))
    state = _counts(tables["vehicle_state"], ("event_id",))
    vdata = _counts(tables["vehicle_data"], ("event_id",))
    all_logs = [w for w in tmp_path.glob("w*.log")]
    conflicts = sum(p.read_text().count('"msg":"lake commit conflict, reloading"') for p in all_logs)
    zombie_drops = sum(p.read_text().count('"msg":"dropping rows another writer already committed"') for p in all_logs)
    fig = {
        "records_produced": sent, "distinct_events": len(distinct), "redeliveries": sent - len(distinct),
        "telemetry_rows": tel[0], "telemetry_event_ids": tel[1], "duplicate_event_field_rows": tel[0] - tel[2],
        "vehicle_state_rows": state[0], "vehicle_data_rows": vdata[0],
        "commit_conflicts_retried": conflicts, "stale_rows_dropped": zombie_drops,
        "caught_up_s_after_stream": caught_up_s,
        "timeline": churn.timeline,
    }
    print(f"\nCLUSTER FIGURES lake_group: {json.dumps(fig)}")
    assert sent == len(stream) and sent > len(distinct)
    assert tel == (data_rows, len(by_type["data"]), data_rows), "every data event once, one row per field"
    assert state == (len(by_type["state"]) + len(by_type["connectivity"]),) * 3
    assert vdata == (len(by_type["vehicle_data"]),) * 3
    nonempty = {tp: off for tp, off in ends.items() if off > 0}
    assert {tp: committed.get(tp) for tp in nonempty} == nonempty, "the group's Kafka offsets are the end offsets"
    for name, topics in _table_topics(prefix).items():
        want = {tp: off for tp, off in nonempty.items() if tp.topic in topics}
        assert stored_offsets(tables[name], group, list(want)) == want, f"{name} stores the end offsets"
