"""Read side of the lake: DuckDB over the Iceberg tables through Arrow, deduplicated by event_id.

DuckDB cannot download its iceberg extension here, so each table is scanned by pyiceberg into
Arrow (optionally filtered by VIN / time, which prunes ``day(created_at)`` partitions) and
registered in an in-memory DuckDB as ``_raw_<table>``; the views ``telemetry``, ``vehicle_state``
and ``vehicle_data`` keep one row per ``(event_id, field)`` / ``event_id`` (the lowest Kafka
position wins), so a duplicate that slipped past the writer's dedup is never visible. The
``telemetry`` view leaves out the rows with ``field`` NULL (they only keep events whose ``data``
object was empty, for the lake replay); ``_raw_telemetry`` has them.

The view ``mistyped_values`` lists the telemetry values of catalogued fields that do not have their
field's type (``schemas.fields.is_mistyped``: a number field sent as an object, a bool field sent as
a word, a location without coordinates): the value as sent (JSON), the kind expected and the JSON
type it came as. The writer counts the same values in ``tpipe_lake_values_mistyped_total{field}``.

The tables are opened with ``consumers.lake.readonly.open_lake``: reading never creates a catalog or
a table; a missing lake is a ``StoreMissingError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from consumers.lake.readonly import open_lake
from consumers.lake.scan import Window, register_rows
from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.tables import TABLES
from schemas.fields import FIELDS, TYPED_KINDS

VIEWS = tuple(t.name for t in TABLES)

#: telemetry values whose JSON type is not their catalogued field's (same rule as ``is_mistyped``)
MISTYPED_SQL = f"""
CREATE VIEW mistyped_values AS
SELECT t.vin, t.created_at, t.field, k.kind AS expected,
       CASE WHEN t.value_json LIKE '{{%' THEN 'object' WHEN t.value_json IS NOT NULL THEN 'array'
            WHEN t.value_string IS NOT NULL THEN 'string' WHEN t.value_bool IS NOT NULL THEN 'bool'
            ELSE 'number' END AS sent_as,
       coalesce(t.value_raw, t.value_json, to_json(t.value_string)::VARCHAR, CAST(t.value_bool AS VARCHAR),
                CAST(t.value_long AS VARCHAR), CAST(t.value_double AS VARCHAR)) AS value,
       t.event_id, t.kafka_topic, t.kafka_partition, t.kafka_offset
FROM telemetry t JOIN _field_kinds k ON k.field = t.field
WHERE k.kind IN ({", ".join(repr(k) for k in sorted(TYPED_KINDS))})
  AND (t.value_double IS NOT NULL OR t.value_long IS NOT NULL OR t.value_bool IS NOT NULL
       OR t.value_string IS NOT NULL OR t.value_json IS NOT NULL OR t.latitude IS NOT NULL)
  AND CASE k.kind WHEN 'bool' THEN t.value_bool IS NULL
                  WHEN 'location' THEN t.latitude IS NULL
                  ELSE t.value_double IS NULL AND t.value_long IS NULL END
"""


def connect(
    settings: LakeCatalogSettings, *, vin: str | None = None, since: datetime | None = None,
    tables: Sequence[str] = VIEWS, until: datetime | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the deduplicating views over the lake tables (a table not created yet
    reads as empty) and ``mistyped_values``, holding the rows of ``vin`` created in ``[since, until)``
    (each bound optional; see ``scan``). Raises ``StoreMissingError`` when there is no lake."""
    existing = open_lake(settings)
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
    if "telemetry" in tables:
        kinds = pa.table({"field": list(FIELDS), "kind": [f.kind for f in FIELDS.values()]})
        con.register("_field_kinds", kinds)
        con.execute(MISTYPED_SQL)
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
