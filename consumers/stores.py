"""Opening a store for reading without ever creating it.

``tpipe alerts ...``, ``tpipe credits report`` and ``tpipe lake ...`` read what a worker wrote. Given a
mistyped path, or run from another directory, SQLAlchemy would create an empty SQLite file and the
command would print zeros: a user would conclude "no alerts". So a read command checks first:

* a SQLite database must exist as a file, and hold the worker's tables;
* a PostgreSQL database must answer and hold the tables;

otherwise ``StoreMissingError`` (exit 2) with one line naming the path and how to set it, e.g.
``no alerts database at /home/me/var/alerts.db (set --db-url or TPIPE_ALERTS_DB_URL, or the state
root with --home or TPIPE_HOME)``. The lake's check is ``consumers.lake.readonly``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from consumers.command import StoreMissingError
from consumers.sqlstore import make_engine, redact_url

__all__ = ["HOW_TO_SET_HOME", "announce_store", "open_existing_database", "sqlite_file"]

HOW_TO_SET_HOME = "or the state root with --home or TPIPE_HOME"


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    try:
        u = make_url(url)
    except ArgumentError:
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return None
    return Path(u.database).expanduser().absolute()


def announce_store(what: str, location: str, err: TextIO | None = None) -> None:
    """Say on stderr which store a command reads (stdout stays the command's output)."""
    print(f"{what}: {location}", file=err if err is not None else sys.stderr, flush=True)


def open_existing_database(url: str, *, what: str, how_to_set: str, tables: Sequence[str]) -> Engine:
    """An engine for an existing database holding ``tables``; ``StoreMissingError`` otherwise.

    ``what`` names the store ("alerts database"), ``how_to_set`` the flag and variable
    ("--db-url or TPIPE_ALERTS_DB_URL")."""
    try:
        shown = redact_url(url)
    except ArgumentError:
        raise StoreMissingError(f"{what}: not a database URL: {url!r} (set {how_to_set})") from None
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise StoreMissingError(f"no {what} at {path} (set {how_to_set}, {HOW_TO_SET_HOME})")
    engine = make_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreMissingError(f"cannot open the {what} {shown}: {reason} (set {how_to_set})") from None
    missing = [t for t in tables if t not in present]
    if missing:
        engine.dispose()
        where = str(path) if path is not None else shown
        raise StoreMissingError(
            f"{where} is not the {what}: it lacks {', '.join(missing)} (has the worker run? set {how_to_set})"
            if present else f"no {what} at {where}: the database is empty (has the worker run? set {how_to_set})"
        )
    return engine
