"""``tpipe lake engine-conf spark|trino``: the settings other engines open the lake with (Spark's are
exercised against a real Spark in ``test_lake_spark.py``; these check the mapping and the refusals)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpipe.cli import main as tpipe_main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = tpipe_main(["lake", "engine-conf", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_spark_conf_for_postgres_and_sqlite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = _run(capsys, "spark", "--catalog-uri", "postgresql+psycopg2://lake:s3cret@db.internal:6432/lake"
                      "?sslmode=require", "--catalog-name", "fleet", "--warehouse", "s3://bucket/wh",
                      "--catalog-property", "s3.endpoint=http://minio:9000")
    assert rc == 0
    assert out.splitlines() == [
        "--conf spark.sql.catalog.fleet=org.apache.iceberg.spark.SparkCatalog",
        "--conf spark.sql.catalog.fleet.warehouse=s3://bucket/wh",
        "--conf spark.sql.catalog.fleet.type=jdbc",
        "--conf spark.sql.catalog.fleet.uri=jdbc:postgresql://db.internal:6432/lake?sslmode=require",
        "--conf spark.sql.catalog.fleet.jdbc.user=lake",
        "--conf spark.sql.catalog.fleet.jdbc.password=s3cret",
        "--conf spark.sql.catalog.fleet.s3.endpoint=http://minio:9000",
    ]
    rc, out, _ = _run(capsys, "spark", "--catalog-uri", f"sqlite:///{tmp_path}/c.db", "--warehouse", str(tmp_path))
    assert rc == 0
    assert f"--conf spark.sql.catalog.tpipe.uri=jdbc:sqlite:{tmp_path}/c.db" in out.splitlines()
    assert f"--conf spark.sql.catalog.tpipe.warehouse={tmp_path.as_uri()}" in out.splitlines()


def test_trino_properties_and_refusals(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = _run(capsys, "trino", "--catalog-uri", "postgresql+psycopg2://lake@db/lake",
                      "--warehouse", str(tmp_path))
    assert rc == 0
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert props == {
        "connector.name": "iceberg", "iceberg.catalog.type": "jdbc",
        "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
        "iceberg.jdbc-catalog.connection-url": "jdbc:postgresql://db:5432/lake",
        "iceberg.jdbc-catalog.catalog-name": "tpipe",
        "iceberg.jdbc-catalog.default-warehouse-dir": tmp_path.as_uri(),
        "iceberg.jdbc-catalog.connection-user": "lake", "fs.hadoop.enabled": "true",
    }
    rc, out, _ = _run(capsys, "trino", "--catalog-type", "rest", "--catalog-uri", "https://cat.example/api",
                      "--warehouse", "s3://b/w")
    assert rc == 0 and "iceberg.rest-catalog.uri=https://cat.example/api" in out.splitlines()
    # bad input: one clear line on stderr, non-zero, nothing on stdout
    rc, out, err = _run(capsys, "trino", "--catalog-uri", f"sqlite:///{tmp_path}/c.db")
    assert (rc, out) == (2, "") and err.count("\n") == 1 and "no SQLite driver" in err
    rc, out, err = _run(capsys, "spark", "--catalog-uri", "sqlite:///:memory:")
    assert (rc, out) == (2, "") and "in-memory" in err
