"""``consumers.lake.scan``: DuckDB reading the planned Parquet files gives exactly the rows pyiceberg's
own scan gives, for a VIN, a time window and both, on a lake written by the worker's code."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from bench.console_lake import fill, vin_of
from consumers.lake.scan import Window, register_rows
from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.tables import TABLES_BY_NAME, load_tables, open_catalog


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[LakeCatalogSettings, dict[str, object]]:
    tmp: Path = tmp_path_factory.mktemp("scan")
    s = LakeCatalogSettings(catalog_uri=f"sqlite:///{tmp / 'catalog.db'}", warehouse=str(tmp / "wh"))
    out = asyncio.run(fill(s.catalog_uri, s.warehouse, 20_000, 4, 2.0))
    return s, out


def _rows(con: duckdb.DuckDBPyConnection, raw: str) -> list[tuple[object, ...]]:
    return sorted(con.execute(f"SELECT event_id, field, vin, created_at, value_double, latitude, kafka_offset "
                              f"FROM {raw}").fetchall(), key=repr)


@pytest.mark.parametrize("case", ["all", "vin", "window", "vin+window", "nothing"])
def test_duckdb_reads_the_rows_pyiceberg_reads(lake: tuple[LakeCatalogSettings, dict[str, object]], case: str) -> None:
    s, info = lake
    first = datetime.fromtimestamp(int(info["first_ms"]) / 1000, UTC)  # type: ignore[call-overload]
    windows = {
        "all": Window(),
        "vin": Window(vin_of(2)),
        "window": Window(None, first + timedelta(hours=20), first + timedelta(hours=30)),
        "vin+window": Window(vin_of(1), first + timedelta(hours=5), first + timedelta(hours=6)),
        "nothing": Window("NO-SUCH-VIN"),
    }
    w = windows[case]
    tbl = load_tables(open_catalog(s), s.namespace)["telemetry"]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    register_rows(con, "fast", tbl, TABLES_BY_NAME["telemetry"], w)
    con.register("reference", tbl.scan(row_filter=w.iceberg()).to_arrow())
    fast, reference = _rows(con, "fast"), _rows(con, "reference")
    assert fast == reference
    assert (len(fast) == 0) == (case == "nothing")
