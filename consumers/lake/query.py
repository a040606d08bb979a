"""Read side of the lake: DuckDB over the Iceberg tables through Arrow, deduplicated by event_id.

DuckDB cannot download its iceberg extension here, so each table is scanned by pyiceberg into
Arrow (optionally filtered by VIN / time, which prunes ``day(created_at)`` partitions) and
registered in an in-memory DuckDB as ``_raw_<table>``; the views ``telemetry``, ``vehicle_state``
and ``vehicle_data`` keep one row per ``(event_id, field)`` / ``event_id`` (the lowest Kafka
position wins), so a duplicate that slipped past the writer's dedup is never visible. The
``telemetry`` view leaves out the rows with ``field`` NULL (they only keep events whose ``data``
object was empty, for the lake replay); ``_raw_telemetry`` has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from consumers.lake.scan import Window, register_rows
from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.tables import TABLES, load_tables, open_catalog

VIEWS = tuple(t.name for t in TABLES)


def connect(
    settings: LakeCatalogSettings, *, vin: str | None = None, since: datetime | None = None,
    tables: Sequence[str] = VIEWS, until: datetime | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the deduplicating views over the lake tables (empty if missing),
    holding the rows of ``vin`` created in ``[since, until)`` (each bound optional; see ``scan``)."""
    catalog = open_catalog(settings)
    existing = load_tables(catalog, settings.namespace)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    window = Window(vin, since, until)
    for tdef in TABLES:
        if tdef.name not in tables:
            continue
        raw = f"_raw_{tdef.name}"
        register_rows(con, raw, existing.get(tdef.name), tdef, window)
        keys = ", ".join(tdef.dedup_by)
        # telemetry rows with field NULL only mark an event whose data object was empty
        where = "WHERE field IS NOT NULL " if tdef.name == "telemetry" else ""
        con.execute(
            f"CREATE VIEW {tdef.name} AS SELECT * FROM {raw} {where}"
            f"QUALIFY row_number() OVER (PARTITION BY {keys} "
            f"ORDER BY kafka_topic, kafka_partition, kafka_offset) = 1"
        )
    return con


def run_sql(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    rel = con.sql(query)
    if rel is None:  # a statement without a result
        return [], []
    return list(rel.columns), rel.fetchall()


LATEST_SQL = """
WITH t AS (
    SELECT field, created_at,
           CASE
             WHEN value_double IS NOT NULL THEN CAST(value_double AS VARCHAR)
             WHEN value_long IS NOT NULL THEN CAST(value_long AS VARCHAR)
             WHEN value_bool IS NOT NULL THEN CAST(value_bool AS VARCHAR)
             WHEN value_json IS NOT NULL THEN value_json
             WHEN latitude IS NOT NULL THEN printf('%f,%f', latitude, longitude)
             WHEN value_string IS NOT NULL THEN value_string
             ELSE 'null'
           END AS value
    FROM telemetry WHERE vin = $vin
    QUALIFY row_number() OVER (PARTITION BY field ORDER BY created_at DESC, kafka_offset DESC) = 1
), s AS (
    SELECT CASE WHEN kind = 'state' THEN 'state' ELSE 'connectivity.' || coalesce(network_interface, '?') END
             AS field,
           created_at,
           coalesce(CASE WHEN kind = 'state' THEN state ELSE status END, 'null') AS value
    FROM vehicle_state WHERE vin = $vin
    QUALIFY row_number() OVER (PARTITION BY kind, network_interface ORDER BY created_at DESC, kafka_offset DESC) = 1
)
SELECT field, value, strftime(created_at, '%Y-%m-%dT%H:%M:%S.%gZ') AS updated_at
FROM (SELECT * FROM t UNION ALL SELECT * FROM s)
ORDER BY field
"""


def latest(settings: LakeCatalogSettings, vin: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The latest value of every telemetry field of ``vin``, plus its online state and connectivity."""
    con = connect(settings, vin=vin, tables=("telemetry", "vehicle_state"))
    rel = con.execute(LATEST_SQL, {"vin": vin})
    cols = [d[0] for d in rel.description]
    return cols, rel.fetchall()


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.10g}"
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    return str(v)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int = 60) -> str:
    """A plain text table (column widths fit the data, long cells cut with an ellipsis)."""
    cells = [[_cell(v) for v in r] for r in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in r] for r in cells]
    widths = [len(c) for c in columns]
    for r in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |", line]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    out.append(line)
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
