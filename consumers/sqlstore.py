"""SQL helpers shared by the workers that keep state in a database (alerts, credits).

One engine per process, from a URL: a SQLite file by default (``sqlite:///var/alerts.db``), or
PostgreSQL (``postgresql://user@host/db``, psycopg2). Workers use SQLAlchemy Core in short
synchronous transactions run in a thread (``asyncio.to_thread``); every effect of a batch of
records is written in one transaction, and idempotency comes from unique keys plus
``insert_ignore`` (``INSERT .. ON CONFLICT DO NOTHING`` on both dialects).

Everything is stored as epoch milliseconds, UTC. The read commands open an existing database with
``consumers.stores.open_existing_database`` (which never creates one) and print through
``plumbing.output``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Column, Connection, Engine, MetaData, Table, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.sql.dml import Insert

__all__ = [
    "create_tables",
    "is_transient",
    "insert_ignore",
    "make_engine",
    "redact_url",
    "unseen_events",
]


def make_engine(url: str, metadata: MetaData | None = None) -> Engine:
    """An engine for ``url``; creates the SQLite file's directory and, given ``metadata``, the tables.

    SQLite runs in WAL mode with ``synchronous=FULL`` (a committed batch survives a power cut, so it
    is safe to commit the Kafka offsets after it) and waits up to 30 s for a concurrent writer (the
    worker and a report command may share the file).
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    else:
        if u.drivername == "postgresql" or u.drivername == "postgres":
            u = u.set(drivername="postgresql+psycopg2")
        engine = create_engine(u, pool_pre_ping=True, pool_size=2, max_overflow=2)
    if metadata is not None:
        create_tables(engine, metadata)
    return engine


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """``metadata.create_all``, safe when several workers start at once on a new database:
    PostgreSQL's ``CREATE TABLE IF NOT EXISTS`` is not (two sessions race on its catalog's unique
    keys), so on PostgreSQL the creation holds a transaction-scoped advisory lock."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('tpipe.create_tables'))"))
        metadata.create_all(conn)


def insert_ignore(engine_or_dialect: Engine | str, table: Table) -> Insert:
    """``INSERT .. ON CONFLICT DO NOTHING`` for ``table`` in the engine's dialect."""
    name = engine_or_dialect if isinstance(engine_or_dialect, str) else engine_or_dialect.dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"unsupported database dialect {name!r} (use sqlite or postgresql)")


class _Event(Protocol):
    @property
    def event_id(self) -> str: ...


_EventT = TypeVar("_EventT", bound=_Event)


def unseen_events(conn: Connection, id_column: Column[Any], events: Iterable[_EventT]) -> tuple[list[_EventT], int]:
    """The idempotency-ledger check of a batch: the events to apply and how many are duplicates.

    Returns the first copy of each ``event_id`` (in batch order) that ``id_column`` (the ledger's
    primary key) does not hold yet, and the number of the others: copies repeated in the batch plus
    events applied before.
    """
    unique: dict[str, _EventT] = {}
    duplicates = 0
    for e in events:
        if e.event_id in unique:
            duplicates += 1
        else:
            unique[e.event_id] = e
    if not unique:
        return [], duplicates
    seen = set(conn.execute(select(id_column).where(id_column.in_(list(unique)))).scalars())
    return [e for i, e in unique.items() if i not in seen], duplicates + len(seen)


def redact_url(url: str) -> str:
    """The URL with its password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def is_transient(exc: BaseException) -> bool:
    """True for database errors worth retrying (connection lost, server down, database locked)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)
