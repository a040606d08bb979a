"""Two telemetry workers committing to the same Iceberg table at the same moment, on a PostgreSQL SQL
catalog (docs/lake.md "Several writers").

Each commit is a compare-and-swap on the catalog row. The sink's table carries
``commit.retry.num-retries=0``, so pyiceberg raises ``CommitFailedException`` instead of re-basing an
append on its own; the sink (``consumers.lake.sink.TableSink.flush``) reloads the table, re-reads the
offsets it stores, drops the rows another writer already committed and appends again. Two writers on
different partitions therefore both land; a stale writer whose partition moved to another worker
("zombie") lands nothing twice.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from aiokafka.structs import TopicPartition
from pyiceberg.exceptions import CommitFailedException

from consumers.lake.settings import LakeSettings
from consumers.lake.sink import TableSink
from consumers.lake.snapshots import stored_offsets
from consumers.lake.tables import TABLES_BY_NAME, ensure_tables, open_catalog
from consumers.runtime import WorkerRecord
from schemas.parse import parse_object
from schemas.times import format_ms, now_ms
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres

TOPIC = "conflict.data"
GROUP = "conflict.telemetry"


def _records(partition: int, count: int, first_offset: int = 0) -> list[WorkerRecord]:
    t0 = now_ms() - 3_600_000
    out = []
    for i in range(count):
        obj = {"createdAt": format_ms(t0 + partition * 1000 + (first_offset + i) * 10_000, ""),
               "vin": f"5YJ3E1EA{partition:09d}",
               "data": {"VehicleSpeed": i, "BatteryLevel": 50}}
        env = parse_object(obj, received_at_ms=t0)[0]
        out.append(WorkerRecord(env, TOPIC, partition, first_offset + i, env.vin.encode() if env.vin else None,
                                env.to_json()))
    return out


@pytest.fixture
def lake(postgres_url: str, tmp_path: Path) -> LakeSettings:  # noqa: F811
    uri = fresh_database(postgres_url, "tpipe_conflict").replace("postgresql://", "postgresql+psycopg2://", 1)
    s = LakeSettings(catalog_uri=uri, warehouse=str(tmp_path / "warehouse"), topic_prefix="conflict")
    ensure_tables(open_catalog(s), s.namespace)
    return s


def _sink(s: LakeSettings) -> TableSink:
    """A telemetry sink with its own catalog connection and its own copy of the table's metadata."""
    catalog = open_catalog(s)
    tdef = TABLES_BY_NAME["telemetry"]
    table = catalog.load_table((s.namespace, tdef.name))
    return TableSink(tdef, catalog, s.namespace, table, GROUP, [TOPIC], commit_rows=10**6, commit_interval_s=60,
                     dedup_days=2, commit_attempts=5)


def _rows(s: LakeSettings) -> list[tuple[str, str]]:
    table = open_catalog(s).load_table((s.namespace, "telemetry"))
    return sorted(zip(*table.scan(selected_fields=("event_id", "field")).to_arrow().to_pydict().values(), strict=True))


def test_the_second_commit_on_stale_metadata_conflicts_reloads_and_lands(
    lake: LakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = _sink(lake), _sink(lake)  # both hold the table as it is now
    tp0, tp1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    assert a.add(_records(0, 5)) == ([], 0) and b.add(_records(1, 7)) == ([], 0)
    a.note_offsets({tp0: 5})
    b.note_offsets({tp1: 7})
    stale = open_catalog(lake).load_table((lake.namespace, "telemetry"))
    assert a.flush() == 10
    with pytest.raises(CommitFailedException):  # pyiceberg itself, on metadata another commit made stale: no re-base
        stale.append(pa.concat_tables([t for _, t in b._day_tables()]))
    with caplog.at_level(logging.WARNING, logger="consumers.lake"):
        assert b.flush() == 14  # the sink: conflict, reload, append again
    conflicts = [r for r in caplog.records if r.getMessage() == "lake commit conflict, reloading"]
    assert len(conflicts) == 1 and getattr(conflicts[0], "attempt", None) == 1
    table = open_catalog(lake).load_table((lake.namespace, "telemetry"))
    assert stored_offsets(table, GROUP, [tp0, tp1]) == {tp0: 5, tp1: 7}
    rows = _rows(lake)
    assert len(rows) == 24 and len(set(rows)) == 24


def test_writers_racing_at_the_same_moment_all_land_once(lake: LakeSettings, caplog: pytest.LogCaptureFixture) -> None:
    sinks = [_sink(lake) for _ in range(2)]
    rounds, per_round = 4, 3
    barrier = threading.Barrier(len(sinks))
    errors: list[BaseException] = []

    def writer(i: int, sink: TableSink) -> None:
        tp = TopicPartition(TOPIC, i)
        try:
            for r in range(rounds):
                sink.add(_records(i, per_round, first_offset=r * per_round))
                sink.note_offsets({tp: (r + 1) * per_round})
                barrier.wait(timeout=60)  # both commit at once
                sink.flush()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    with caplog.at_level(logging.WARNING, logger="consumers.lake"):
        threads = [threading.Thread(target=writer, args=(i, s)) for i, s in enumerate(sinks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors
    conflicts = sum(1 for r in caplog.records if r.getMessage() == "lake commit conflict, reloading")
    print(f"\nLAKE FIGURES racing writers: rounds={rounds} commits={sum(s.commits for s in sinks)} conflicts={conflicts}")
    assert sum(s.commits for s in sinks) == rounds * len(sinks)
    table = open_catalog(lake).load_table((lake.namespace, "telemetry"))
    tps = [TopicPartition(TOPIC, i) for i in range(len(sinks))]
    assert stored_offsets(table, GROUP, tps) == dict.fromkeys(tps, rounds * per_round)
    rows = _rows(lake)
    assert len(rows) == len(set(rows)) == len(sinks) * rounds * per_round * 2


def test_a_stale_writer_whose_partition_moved_appends_nothing_twice(
    lake: LakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    tp = TopicPartition(TOPIC, 0)
    zombie, owner = _sink(lake), _sink(lake)
    zombie.add(_records(0, 6))  # it buffered offsets 0-5 of partition 0, then lost the partition unnoticed
    zombie.note_offsets({tp: 6})
    assert owner.load_positions([tp]) == {}  # the new owner starts where the table says: nowhere yet
    owner.add(_records(0, 6))
    owner.note_offsets({tp: 6})
    assert owner.flush() == 12
    with caplog.at_level(logging.WARNING, logger="consumers.lake"):
        assert zombie.flush() == 0  # conflict, reload: offsets 0-5 are stored already, its rows are dropped
    messages = [r.getMessage() for r in caplog.records]
    assert "lake commit conflict, reloading" in messages
    assert "dropping rows another writer already committed" in messages
    rows = _rows(lake)
    assert len(rows) == len(set(rows)) == 12


def test_workers_starting_together_on_a_new_catalog_both_open_the_tables(lake: LakeSettings) -> None:
    """Two workers open a fresh catalog at once: both see no namespace, one inserts it first; the
    other's insert fails on the catalog's unique key and must not stop it (seen on PostgreSQL)."""
    catalog = open_catalog(lake)  # the namespace exists (the fixture created it)
    checks = iter([False])  # this worker checked before the other one's insert landed
    catalog.namespace_exists = lambda ns: next(checks, True)  # type: ignore[method-assign]
    tables = ensure_tables(catalog, lake.namespace)
    assert set(tables) == set(TABLES_BY_NAME)
