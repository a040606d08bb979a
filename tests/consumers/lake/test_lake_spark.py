"""The lake read by a distributed engine: Apache Spark (local mode, Iceberg's Spark runtime) opens the
tables the telemetry worker wrote, through Iceberg's JDBC catalog over the same SQL catalog pyiceberg
writes (SQLite, then PostgreSQL), configured by ``tpipe lake engine-conf spark``, and gets the same
row counts and the same answers to the README's three queries as DuckDB (``tpipe lake sql``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.lake.engines import spark_views
from consumers.lake.query import connect, run_sql
from consumers.lake.settings import LakeSettings
from consumers.lake.tables import TABLES
from plumbing.settings import KafkaSettings
from tests.support import demo_stream
from tests.support.kafka_broker import broker_settings, produce_envelopes
from tests.support.lake import fill_lake
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401
from tests.support.spark import register_lake, spark  # noqa: F401
from tpipe.cli import main as tpipe_main

pytestmark = [pytest.mark.kafka, pytest.mark.spark]

# The README's three queries, as `tpipe lake sql` runs them (DuckDB) ...
DUCKDB = {
    "distance": """SELECT vin, CAST(created_at AS DATE) AS day,
                          round(max(value_double) - min(value_double), 2) AS miles
                   FROM telemetry WHERE field = 'Odometer' AND value_double IS NOT NULL
                   GROUP BY ALL ORDER BY vin, day""",
    "charging": """WITH s AS (SELECT vin, created_at, value_string = 'DetailedChargeStateCharging' AS charging
                              FROM telemetry WHERE field = 'DetailedChargeState'),
                   e AS (SELECT * FROM s QUALIFY charging IS DISTINCT FROM
                           lag(charging) OVER (PARTITION BY vin ORDER BY created_at))
                   SELECT vin, created_at AS started,
                          lead(created_at) OVER (PARTITION BY vin ORDER BY created_at) - created_at AS duration,
                          charging FROM e QUALIFY charging ORDER BY vin, started""",
    "location": """SELECT vin, arg_max(latitude, created_at) AS lat, arg_max(longitude, created_at) AS lon,
                          max(created_at) AS seen_at
                   FROM telemetry WHERE field = 'Location' AND latitude IS NOT NULL GROUP BY vin""",
}
# ... and in Spark SQL (no QUALIFY: a filtered subquery; arg_max is max_by), as docs/lake.md gives them
SPARK = {
    "distance": """SELECT vin, CAST(created_at AS DATE) AS day,
                          round(max(value_double) - min(value_double), 2) AS miles
                   FROM telemetry WHERE field = 'Odometer' AND value_double IS NOT NULL
                   GROUP BY ALL ORDER BY vin, day""",
    "charging": """WITH s AS (SELECT vin, created_at, value_string = 'DetailedChargeStateCharging' AS charging
                              FROM telemetry WHERE field = 'DetailedChargeState'),
                   e AS (SELECT vin, created_at, charging FROM (
                           SELECT *, lag(charging) OVER (PARTITION BY vin ORDER BY created_at) AS before FROM s)
                         WHERE charging IS DISTINCT FROM before),
                   d AS (SELECT vin, created_at AS started,
                                lead(created_at) OVER (PARTITION BY vin ORDER BY created_at) - created_at AS duration,
                                charging FROM e)
                   SELECT * FROM d WHERE charging ORDER BY vin, started""",
    "location": """SELECT vin, max_by(latitude, created_at) AS lat, max_by(longitude, created_at) AS lon,
                          max(created_at) AS seen_at
                   FROM telemetry WHERE field = 'Location' AND latitude IS NOT NULL GROUP BY vin""",
}


@pytest.fixture(scope="module")
def demo_topics(kafka_bootstrap: str) -> Iterator[KafkaSettings]:
    """The demo stream (3 vehicles, 2 days, 3 webhooks delivered twice) in Kafka, once for the module."""
    kafka = broker_settings(kafka_bootstrap, topic_prefix=f"s{uuid.uuid4().hex[:8]}", topic_partitions=3)
    asyncio.run(produce_envelopes(kafka, demo_stream.generate(days=2)))
    yield kafka


def _lake(kafka: KafkaSettings, tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> LakeSettings:
    if backend == "sqlite":
        uri, name = f"sqlite:///{tmp_path}/catalog.db", "tpipe"
    else:  # a catalog of another name: Spark's catalog must carry it
        uri, name = fresh_database(request.getfixturevalue("postgres_url")).replace(
            "postgresql://", "postgresql+psycopg2://", 1), "fleet"
    return LakeSettings(**kafka.model_dump(), catalog_uri=uri, catalog_name=name, warehouse=str(tmp_path / "wh"),
                        group_id=f"lake-{backend}-{uuid.uuid4().hex[:6]}", commit_interval_s=0.3, metrics_port=0)


def _spark_conf(lake: LakeSettings, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """What ``tpipe lake engine-conf spark`` prints for this lake, as a dict."""
    capsys.readouterr()
    assert tpipe_main(["lake", "engine-conf", "spark", "--catalog-uri", lake.catalog_uri,
                       "--catalog-name", lake.catalog_name, "--warehouse", lake.warehouse]) == 0
    lines = capsys.readouterr().out.split()
    pairs = [v.split("=", 1) for flag, v in zip(lines[::2], lines[1::2], strict=True) if flag == "--conf"]
    return dict(pairs)  # type: ignore[arg-type]


def _value(v: Any) -> Any:
    """Spark hands timestamps back as naive local datetimes, DuckDB as aware UTC ones."""
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.astimezone()).astimezone(UTC)
    return v


def _rows(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((tuple(_value(v) for v in r) for r in rows), key=repr)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_spark_reads_the_lake_with_duckdbs_counts_and_answers(
    backend: str, demo_topics: KafkaSettings, spark: Any, tmp_path: Path,  # noqa: F811
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
) -> None:
    lake = _lake(demo_topics, tmp_path, backend, request)
    asyncio.run(fill_lake(lake))
    register_lake(spark, _spark_conf(lake, capsys))
    duck = connect(lake)
    cat = f"{lake.catalog_name}.{lake.namespace}"

    listed = {r.tableName for r in spark.sql(f"SHOW TABLES IN {cat}").collect()}
    assert listed == {t.name for t in TABLES}
    counts: dict[str, tuple[int, int]] = {}
    for stmt in spark_views(lake):
        spark.sql(stmt)
    for t in TABLES:
        raw_spark = spark.sql(f"SELECT count(*) FROM {cat}.{t.name}").collect()[0][0]
        view_spark = spark.sql(f"SELECT count(*) FROM {t.name}").collect()[0][0]
        raw_duck = run_sql(duck, f"SELECT count(*) FROM _raw_{t.name}")[1][0][0]
        view_duck = run_sql(duck, f"SELECT count(*) FROM {t.name}")[1][0][0]
        assert (raw_spark, view_spark) == (raw_duck, view_duck), t.name
        counts[t.name] = (raw_spark, view_spark)
    assert counts["telemetry"][1] > 1000 and counts["vehicle_state"][1] > 0 and counts["vehicle_data"][1] > 0

    answers: dict[str, list[tuple[Any, ...]]] = {}
    for name, sql in DUCKDB.items():
        from_duck = _rows(run_sql(duck, sql)[1])
        from_spark = _rows(spark.sql(SPARK[name]).collect())
        assert from_spark == from_duck, name
        assert from_duck, name
        answers[name] = from_duck
    assert {d for _, d, _ in answers["distance"]} == {date(2026, 1, 1), date(2026, 1, 2)}
    assert len(answers["charging"]) == 6 and len(answers["location"]) == 3
    print(f"\n[{backend}] rows (raw, deduplicated) per table, Spark = DuckDB: {counts}")
    for name, rows in answers.items():
        print(f"[{backend}] {name}, Spark = DuckDB:")
        for r in rows:
            print("   ", " | ".join(str(v) for v in r))
