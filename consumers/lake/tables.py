"""The lake's catalog and its three Iceberg tables (schemas, partitioning, properties).

    telemetry      one row per (event, field) of ``data`` events
    vehicle_state  ``state`` and ``connectivity`` events
    vehicle_data   ``vehicle_data`` snapshots (the object as JSON text)

Columns added after the first release (``created_at_text``, ``source_format``, ``value_raw``,
``payload_rest``, ``payload_json``: what a lake replay needs to rebuild each payload exactly) sit at
the end of each schema, are nullable, and are added to existing tables on open
(``update_schema().union_by_name``); rows written before stay NULL there.

All three are partitioned by ``day(created_at)`` and declare the sort order (vin, created_at), which
every commit honours within its files. Appends merge small manifests (``commit.manifest-merge.enabled``)
so a scan does not open one manifest per commit. ``commit.retry.num-retries=0``: pyiceberg must never re-base
a conflicting append on its own (a stale writer would append the same offsets twice); the sink
handles ``CommitFailedException`` itself (see ``consumers.lake.sink``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from consumers.lake.settings import LakeCatalogSettings
from plumbing.retry import Backoff

log = logging.getLogger("consumers.lake")

TABLE_PROPERTIES = {
    "commit.retry.num-retries": "0",
    "write.parquet.compression-codec": "zstd",
    "write.metadata.delete-after-commit.enabled": "true",
    # pyiceberg copies the metadata (this log included) several times per commit
    "write.metadata.previous-versions-max": "20",
    # merge small manifests (at 100 by default) instead of one more per commit for every reader to open
    "commit.manifest-merge.enabled": "true",
}
#: Set on tables created before they were defaults, when the table does not set them itself.
_DEFAULTED_PROPERTIES = ("commit.manifest-merge.enabled", "write.metadata.delete-after-commit.enabled")

_S, _TS, _D, _L, _I, _B = StringType(), TimestamptzType(), DoubleType(), LongType(), IntegerType(), BooleanType()


def _fields(*cols: tuple[str, Any]) -> Schema:
    return Schema(*(NestedField(i, name, t, required=False) for i, (name, t) in enumerate(cols, start=1)))


_KAFKA = (("received_at", _TS), ("is_cache", _B), ("kafka_topic", _S), ("kafka_partition", _I), ("kafka_offset", _L))
# exact-replay columns (schema v2): the envelope's created_at text and source format
_EXACT = (("created_at_text", _S), ("source_format", _S))

TELEMETRY = _fields(
    ("event_id", _S), ("vin", _S), ("created_at", _TS), ("field", _S),
    ("value_double", _D), ("value_long", _L), ("value_bool", _B), ("value_string", _S),
    ("latitude", _D), ("longitude", _D), ("value_json", _S),
    *_KAFKA,
    *_EXACT, ("value_raw", _S), ("payload_rest", _S),
)
VEHICLE_STATE = _fields(
    ("event_id", _S), ("vin", _S), ("created_at", _TS), ("kind", _S),
    ("state", _S), ("network_interface", _S), ("status", _S),
    *_KAFKA,
    *_EXACT, ("payload_json", _S),
)
VEHICLE_DATA = _fields(
    ("event_id", _S), ("vin", _S), ("created_at", _TS), ("json", _S),
    *_KAFKA,
    *_EXACT, ("payload_rest", _S),
)


@dataclass(frozen=True)
class TableDef:
    name: str
    schema: Schema
    event_types: tuple[str, ...]
    dedup_by: tuple[str, ...]  # columns identifying one logical row (read-side dedup)

    @property
    def arrow_schema(self) -> pa.Schema:
        return self.schema.as_arrow()

    def partition_spec(self) -> PartitionSpec:
        src = self.schema.find_field("created_at").field_id
        return PartitionSpec(PartitionField(src, 1000, DayTransform(), "created_at_day"))

    def sort_order(self) -> SortOrder:
        return SortOrder(
            SortField(self.schema.find_field("vin").field_id, IdentityTransform()),
            SortField(self.schema.find_field("created_at").field_id, IdentityTransform()),
        )


TABLES: tuple[TableDef, ...] = (
    TableDef("telemetry", TELEMETRY, ("data",), ("event_id", "field")),
    TableDef("vehicle_state", VEHICLE_STATE, ("state", "connectivity"), ("event_id",)),
    TableDef("vehicle_data", VEHICLE_DATA, ("vehicle_data",), ("event_id",)),
)
TABLES_BY_NAME = {t.name: t for t in TABLES}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


_hook_installed = False


def _install_sqlite_hook() -> None:
    """WAL + busy_timeout on every SQLite connection SQLAlchemy opens (pyiceberg sets neither)."""
    global _hook_installed
    if _hook_installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", _sqlite_pragmas)
    _hook_installed = True


def catalog_properties(s: LakeCatalogSettings) -> dict[str, str]:
    props: dict[str, str] = {"uri": s.catalog_uri, "warehouse": s.warehouse}
    for item in s.catalog_property:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--catalog-property wants KEY=VALUE, got {item!r}")
        props[key.strip()] = value.strip()
    return props


def open_catalog(s: LakeCatalogSettings) -> Catalog:
    """SqlCatalog (SQLite with WAL + busy_timeout, or PostgreSQL) or a REST catalog."""
    props = catalog_properties(s)
    if s.catalog_type == "rest":
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog(s.catalog_name, **props)
    from pyiceberg.catalog.sql import SqlCatalog

    uri = s.catalog_uri
    if uri.startswith("sqlite"):
        _install_sqlite_hook()
        db = uri.split(":///", 1)[1] if ":///" in uri else ""
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    wh = s.warehouse
    if "://" not in wh:  # a local folder: absolute file URI, created
        path = Path(wh).resolve()
        path.mkdir(parents=True, exist_ok=True)
        props["warehouse"] = path.as_uri()
    backoff = Backoff(0.05, cap=0.4)
    for attempt in range(5):
        try:
            return SqlCatalog(s.catalog_name, **props)
        except DBAPIError:  # another process created the catalog tables at the same moment
            if attempt == 4:
                raise
            time.sleep(backoff.next())
    raise AssertionError("unreachable")


def ensure_tables(catalog: Catalog, namespace: str) -> dict[str, Table]:
    """Create the namespace and the tables if missing (safe against a concurrent creator)."""
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    except IntegrityError:  # workers starting together: another inserted it after pyiceberg's check
        if not catalog.namespace_exists(namespace):
            raise
    out: dict[str, Table] = {}
    for t in TABLES:
        ident = (namespace, t.name)
        try:
            tbl = catalog.load_table(ident)
        except NoSuchTableError:
            try:
                tbl = catalog.create_table(
                    ident, schema=t.schema, partition_spec=t.partition_spec(), sort_order=t.sort_order(),
                    properties=TABLE_PROPERTIES,
                )
                log.info("created lake table", extra={"table": f"{namespace}.{t.name}"})
            except TableAlreadyExistsError:
                tbl = catalog.load_table(ident)
        update = {k: TABLE_PROPERTIES[k] for k in _DEFAULTED_PROPERTIES if k not in tbl.properties}
        if tbl.properties.get("commit.retry.num-retries") != "0":
            update["commit.retry.num-retries"] = "0"
        if update:
            with tbl.transaction() as tx:
                tx.set_properties(update)
            tbl = catalog.load_table(ident)
        out[t.name] = evolve_table(catalog, ident, tbl, t)
    return out


def missing_columns(tbl: Table, tdef: TableDef) -> list[str]:
    """Columns of ``tdef`` the table does not have yet (a table created by an older version)."""
    have = {f.name for f in tbl.schema().fields}
    return [f.name for f in tdef.schema.fields if f.name not in have]


def evolve_table(catalog: Catalog, ident: tuple[str, str], tbl: Table, tdef: TableDef, attempts: int = 5) -> Table:
    """Add the columns of ``tdef`` the table lacks (all nullable; old rows read them as NULL).

    ``union_by_name`` only adds; a concurrent evolver makes the commit fail, then the table is
    reloaded and checked again."""
    for _ in range(attempts):
        missing = missing_columns(tbl, tdef)
        if not missing:
            return tbl
        try:
            with tbl.update_schema() as upd:
                upd.union_by_name(tdef.schema)
            log.info("evolved lake table", extra={"table": ".".join(ident), "added": missing})
        except CommitFailedException:
            pass  # another writer evolved it (or committed) at the same moment: look again
        tbl = catalog.load_table(ident)
    if missing_columns(tbl, tdef):
        raise RuntimeError(f"could not add columns {missing_columns(tbl, tdef)} to {'.'.join(ident)}")
    return tbl


def load_tables(catalog: Catalog, namespace: str) -> dict[str, Table]:
    """The tables that exist (the read side never creates anything)."""
    out: dict[str, Table] = {}
    for t in TABLES:
        try:
            out[t.name] = catalog.load_table((namespace, t.name))
        except NoSuchTableError:
            continue
    return out
