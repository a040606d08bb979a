"""Opening the lake for reading without ever creating a catalog, a namespace or a table.

pyiceberg's SQL catalog creates its catalog tables when it connects, and SQLAlchemy creates a SQLite
file on first connect: a mistyped ``--catalog-uri`` (or a relative default read from another
directory) would leave an empty catalog behind and every query would answer zero rows. So the read
commands (``tpipe lake sql|latest|replay``) go through ``open_lake``: a SQLite catalog file must
exist, the catalog is opened with ``init_catalog_tables=false``, and at least one of the lake's
tables must exist in the namespace; otherwise ``StoreMissingError`` (exit 2) names what is missing
and how to set it.
"""

from __future__ import annotations

from pyiceberg.exceptions import NoSuchNamespaceError
from pyiceberg.table import Table
from sqlalchemy.exc import SQLAlchemyError

from consumers.command import StoreMissingError
from consumers.lake.settings import LakeCatalogSettings
from consumers.lake.tables import load_tables, open_catalog
from consumers.sqlstore import redact_url
from consumers.stores import HOW_TO_SET_HOME, sqlite_file

__all__ = ["describe_lake", "open_lake"]

_HOW = "--catalog-uri or TPIPE_CATALOG_URI"


def describe_lake(s: LakeCatalogSettings) -> str:
    """Where the lake is, for the line a read command prints (passwords hidden)."""
    path = sqlite_file(s.catalog_uri) if s.catalog_type == "sql" else None
    try:
        where = str(path) if path is not None else redact_url(s.catalog_uri)
    except Exception:  # a REST URL SQLAlchemy cannot parse
        where = s.catalog_uri
    return f"catalog {where} ({s.catalog_type}), namespace {s.namespace}"


def open_lake(s: LakeCatalogSettings) -> dict[str, Table]:
    """The lake tables that exist (at least one), for reading."""
    settings = s
    if s.catalog_type == "sql":
        path = sqlite_file(s.catalog_uri)
        if path is not None and not path.is_file():
            raise StoreMissingError(f"no lake catalog at {path} (set {_HOW}, {HOW_TO_SET_HOME})")
        settings = s.model_copy(update={"catalog_property": [*s.catalog_property, "init_catalog_tables=false"]})
    try:
        catalog = open_catalog(settings)
        tables = load_tables(catalog, s.namespace)
    except (SQLAlchemyError, NoSuchNamespaceError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreMissingError(f"cannot read the lake {describe_lake(s)}: {reason} (set {_HOW})") from None
    if not tables:
        raise StoreMissingError(
            f"no lake tables in {describe_lake(s)} (has `tpipe consume telemetry` run? set {_HOW} or "
            "--namespace / TPIPE_NAMESPACE)"
        )
    return tables
