"""How other engines open the lake: Spark's and Trino's settings for the catalog tpipe writes.

The SQL catalog pyiceberg writes (``iceberg_tables`` / ``iceberg_namespace_properties`` in SQLite or
PostgreSQL) is Iceberg's JDBC catalog, so Spark and Trino read the same tables through it: the JDBC
URL of ``--catalog-uri``, the same warehouse, and the catalog *name* ``--catalog-name`` (rows of the
catalog are keyed by it: in Spark it is the name the catalog is registered under). A REST catalog is
passed on as is. ``tpipe lake engine-conf spark|trino`` prints them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy.engine import make_url

from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.tables import TABLES, catalog_properties

__all__ = ["jdbc_connection", "spark_conf", "spark_views", "trino_properties", "warehouse_uri"]


def warehouse_uri(s: LakeCatalogSettings) -> str:
    """The warehouse as a URI (a local folder becomes ``file:/abs/path``, as the writer resolves it)."""
    return s.warehouse if "://" in s.warehouse else Path(s.warehouse).resolve().as_uri()


def jdbc_connection(s: LakeCatalogSettings) -> tuple[str, str | None, str | None]:
    """(JDBC URL, user, password) of the SQL catalog ``--catalog-uri`` (an SQLAlchemy URL)."""
    url = make_url(s.catalog_uri)
    backend = url.get_backend_name()
    if backend == "sqlite":
        db = url.database or ""
        if not db or db == ":memory:":
            raise ValueError("an in-memory SQLite catalog cannot be shared with another engine")
        return f"jdbc:sqlite:{Path(db).resolve()}", None, None
    if backend == "postgresql":
        query = f"?{urlencode(dict(url.query))}" if url.query else ""
        return f"jdbc:postgresql://{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}{query}", \
            url.username, url.password
    raise ValueError(f"no JDBC mapping for a {backend} catalog (sqlite and postgresql are supported)")


def _storage_properties(s: LakeCatalogSettings) -> dict[str, str]:
    props = catalog_properties(s)
    return {k: v for k, v in props.items() if k not in ("uri", "warehouse")}


def spark_conf(s: LakeCatalogSettings) -> dict[str, str]:
    """``spark.sql.catalog.<catalog-name>.*`` for Iceberg's ``SparkCatalog`` over this lake."""
    p = f"spark.sql.catalog.{s.catalog_name}"
    conf = {p: "org.apache.iceberg.spark.SparkCatalog", f"{p}.warehouse": warehouse_uri(s)}
    if s.catalog_type == "rest":
        conf |= {f"{p}.type": "rest", f"{p}.uri": s.catalog_uri}
    else:
        url, user, password = jdbc_connection(s)
        conf |= {f"{p}.type": "jdbc", f"{p}.uri": url}
        if user:
            conf[f"{p}.jdbc.user"] = user
        if password:
            conf[f"{p}.jdbc.password"] = password
    conf |= {f"{p}.{k}": v for k, v in _storage_properties(s).items()}
    return conf


def spark_views(s: LakeCatalogSettings) -> list[str]:
    """Spark SQL creating the temporary views ``telemetry``, ``vehicle_state``, ``vehicle_data`` as
    ``tpipe lake sql`` defines them: one row per ``(event_id, field)`` / ``event_id``, the lowest Kafka
    position winning, and no ``field`` NULL rows in ``telemetry`` (Spark has no QUALIFY)."""
    out = []
    for tdef in TABLES:
        cols = ", ".join(tdef.arrow_schema.names)
        where = " WHERE field IS NOT NULL" if tdef.name == "telemetry" else ""
        out.append(
            f"CREATE OR REPLACE TEMPORARY VIEW {tdef.name} AS SELECT {cols} FROM ("
            f"SELECT *, row_number() OVER (PARTITION BY {', '.join(tdef.dedup_by)} "
            f"ORDER BY kafka_topic, kafka_partition, kafka_offset) AS _first "
            f"FROM {s.catalog_name}.{s.namespace}.{tdef.name}{where}) WHERE _first = 1"
        )
    return out


def trino_properties(s: LakeCatalogSettings) -> dict[str, str]:
    """A Trino catalog file (``etc/catalog/<name>.properties``) for the Iceberg connector over this lake."""
    props = {"connector.name": "iceberg"}
    wh = warehouse_uri(s)
    if s.catalog_type == "rest":
        props |= {"iceberg.catalog.type": "rest", "iceberg.rest-catalog.uri": s.catalog_uri,
                  "iceberg.rest-catalog.warehouse": wh}
    else:
        url, user, password = jdbc_connection(s)
        if url.startswith("jdbc:sqlite:"):
            raise ValueError("Trino's JDBC catalog has no SQLite driver: put the catalog on PostgreSQL")
        props |= {"iceberg.catalog.type": "jdbc", "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
                  "iceberg.jdbc-catalog.connection-url": url, "iceberg.jdbc-catalog.catalog-name": s.catalog_name,
                  "iceberg.jdbc-catalog.default-warehouse-dir": wh}
        if user:
            props["iceberg.jdbc-catalog.connection-user"] = user
        if password:
            props["iceberg.jdbc-catalog.connection-password"] = password
    if wh.startswith("file:"):
        props["fs.hadoop.enabled"] = "true"
    elif wh.startswith("s3"):
        props["fs.native-s3.enabled"] = "true"
    return props
