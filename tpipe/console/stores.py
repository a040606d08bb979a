"""The stores the console reads, opened with the read commands' own checks (one copy of the rules).

An alerts or credits database is opened by ``consumers.stores.open_existing_database`` (a SQLite file
that exists, or a PostgreSQL database that answers, holding the worker's tables), the lake by
``consumers.lake.readonly.open_lake`` (through ``consumers.lake.query.connect``). A store that is not
there raises the consumers' ``StoreMissingError`` with the read commands' message — "no alerts
database at /path/var/alerts.db (set ...)" — which the page shows; nothing is created. A database's
engine is kept once it opened; the lake is asked again on every read (new snapshots, tables created
since).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import duckdb
from pyiceberg.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError

from consumers.lake.query import connect
from consumers.lake.readonly import describe_lake, open_lake
from consumers.lake.scan import Window
from consumers.lake.settings import LakeCatalogSettings
from consumers.sqlstore import redact_url
from consumers.stores import open_existing_database, sqlite_file

__all__ = ["LakeStore", "SqlStore"]


@dataclass
class SqlStore:
    """A worker's database (alerts, credits), opened on first use once it exists."""

    what: str  # "alerts database"
    url: str
    tables: tuple[str, ...]
    how_to_set: str  # "--alerts-db-url or TPIPE_ALERTS_DB_URL"
    _engine: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def engine(self) -> Engine:
        """The engine of the existing database; ``StoreMissingError`` while there is none."""
        with self._lock:
            if self._engine is None:
                self._engine = open_existing_database(self.url, what=self.what, how_to_set=self.how_to_set,
                                                      tables=self.tables)
            return self._engine

    def where(self) -> str:
        path = sqlite_file(self.url)
        try:
            return str(path) if path is not None else redact_url(self.url)
        except ArgumentError:
            return "?"


class LakeStore:
    """The lake, read through ``tpipe lake``'s query layer."""

    def __init__(self, settings: LakeCatalogSettings) -> None:
        self.settings = settings

    def connect(self, window: Window, tables: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
        """The query layer's deduplicating views (``consumers.lake.query.connect``) over ``window``."""
        return connect(self.settings, vin=window.vin, since=window.since, until=window.until, tables=tables)

    def tables(self) -> dict[str, Table]:
        """The lake tables that exist now, at their current snapshot (at least one, or ``StoreMissingError``)."""
        return open_lake(self.settings)

    def where(self) -> str:
        return describe_lake(self.settings)
