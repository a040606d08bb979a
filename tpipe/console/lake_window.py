"""One VIN's window of the lake read once, for a page that asks it several questions.

The Vehicle page asks the same window for the latest values (``tpipe lake latest``'s ``LATEST_SQL``)
and for the chart and route points. Through the query layer's ``telemetry`` view each question reads
the Parquet files again and deduplicates the window again — one row per ``(event_id, field)``, the
lowest Kafka position wins — by sorting every row on a 32-character id: over three days of one car
(~50,000 rows) that sort was most of the page's time.

``read_once(con)`` reads the window's rows of ``_raw_telemetry`` once into memory (the columns those
questions use) and puts that table in place of the ``telemetry`` view, deduplicated by the view's own
rule applied only to the keys that have copies, found with one hash aggregate: a lake without
redeliveries has none, and a duplicate that slipped past the writer is still read once. The
connection is the page's own; ``mistyped_values`` and the columns left out are not for it.
"""

from __future__ import annotations

import duckdb

__all__ = ["COLUMNS", "read_once"]

#: what LATEST_SQL and the chart and route query read, and what the dedup rule orders by
COLUMNS = ("event_id", "vin", "field", "created_at", "kafka_topic", "kafka_partition", "kafka_offset",
           "value_double", "value_long", "value_bool", "value_string", "value_json", "latitude", "longitude")

_KEEP_FIRST_COPY = """
DELETE FROM _window WHERE rowid IN (
    SELECT rowid FROM _window
    WHERE event_id IN (SELECT event_id FROM _window GROUP BY event_id, field HAVING count(*) > 1)
    QUALIFY row_number() OVER (PARTITION BY event_id, field ORDER BY kafka_topic, kafka_partition, kafka_offset) > 1
)
"""


def read_once(con: duckdb.DuckDBPyConnection) -> int:
    """Replace ``telemetry`` on ``con`` (made by ``consumers.lake.query.connect``) by its rows in
    memory; returns how many there are."""
    con.execute(f"CREATE TABLE _window AS SELECT {', '.join(COLUMNS)} FROM _raw_telemetry WHERE field IS NOT NULL")
    con.execute(_KEEP_FIRST_COPY)
    con.execute("CREATE OR REPLACE VIEW telemetry AS SELECT * FROM _window")
    row = con.execute("SELECT count(*) FROM _window").fetchone()
    return int(row[0]) if row else 0
