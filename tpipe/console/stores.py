"""The stores the console reads, opened only when they exist (a read never creates one).

An alerts or credits database is opened when its SQLite file exists (or, for PostgreSQL, when the
database answers) and it holds the worker's tables; the lake when its SQLite catalog file exists (a
REST or PostgreSQL catalog is asked) and holds at least one lake table. Otherwise the page shows
why — "no alerts database at /path/var/alerts.db" — and nothing is created. Engines and the lake's
catalog are opened once per console and kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from consumers.lake.query import connect
from consumers.lake.scan import Window
from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.tables import load_tables, open_catalog
from consumers.sqlstore import make_engine, redact_url

__all__ = ["Missing", "SqlStore", "LakeStore", "sqlite_file"]


class Missing(Exception):
    """A store the console was pointed at does not exist (the message says where it looked)."""


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    try:
        u = make_url(url)
    except ArgumentError:
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return None
    return Path(u.database).expanduser().absolute()


@dataclass
class SqlStore:
    """A worker's database (alerts, credits), opened on first use once it exists."""

    what: str  # "alerts database"
    url: str
    tables: tuple[str, ...]
    _engine: Engine | None = None

    def engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        try:
            shown = redact_url(self.url)
        except ArgumentError:
            raise Missing(f"{self.what}: not a database URL") from None
        path = sqlite_file(self.url)
        if path is not None and not path.is_file():
            raise Missing(f"no {self.what} at {path}")
        engine = make_engine(self.url)
        try:
            present = set(inspect(engine).get_table_names())
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise Missing(f"cannot open the {self.what} {shown}: {reason}") from None
        missing = [t for t in self.tables if t not in present]
        if missing:
            engine.dispose()
            raise Missing(f"{path or shown} is not the {self.what} yet: it lacks {', '.join(missing)} "
                          "(has the worker run?)")
        self._engine = engine
        return engine

    def where(self) -> str:
        path = sqlite_file(self.url)
        try:
            return str(path) if path is not None else redact_url(self.url)
        except ArgumentError:
            return "?"


class LakeStore:
    """The lake's catalog, opened once it exists; the tables reloaded when asked (new snapshots)."""

    def __init__(self, settings: LakeCatalogSettings) -> None:
        self.settings = settings
        if settings.catalog_type == "sql":  # never create the SQL catalog's own tables where they lack
            settings = settings.model_copy(
                update={"catalog_property": [*settings.catalog_property, "init_catalog_tables=false"]})
        self.read_settings = settings
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """``Missing`` when the lake's SQLite catalog file does not exist."""
        if self.settings.catalog_type == "sql":
            path = sqlite_file(self.settings.catalog_uri)
            if path is not None and not path.is_file():
                raise Missing(f"no lake at {path}")

    def connect(self, window: Window, tables: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
        """The query layer's deduplicating views (``consumers.lake.query.connect``) over ``window``."""
        self.check()
        try:
            return connect(self.read_settings, vin=window.vin, since=window.since, until=window.until, tables=tables)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise Missing(f"cannot read the lake at {self.where()}: {reason}") from None

    def where(self) -> str:
        path = sqlite_file(self.settings.catalog_uri) if self.settings.catalog_type == "sql" else None
        return str(path) if path is not None else self.settings.catalog_uri

    def catalog(self) -> Catalog:
        with self._lock:
            if self._catalog is None:
                self.check()
                try:
                    self._catalog = open_catalog(self.read_settings)
                except SQLAlchemyError as exc:
                    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                    raise Missing(f"cannot read the lake at {self.where()}: {reason}") from None
            return self._catalog

    def tables(self) -> dict[str, Table]:
        """The lake tables that exist now, at their current snapshot (at least one, or ``Missing``)."""
        try:
            found = load_tables(self.catalog(), self.settings.namespace)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise Missing(f"cannot read the lake at {self.where()}: {reason}") from None
        if not found:
            raise Missing(f"no lake tables in {self.where()} (has `tpipe consume telemetry` run?)")
        return found
