"""The notification outbox: two tables living in each worker's own database.

``notify_outbox`` holds one row per notification (primary key ``notification_id``), inserted with
``ON CONFLICT DO NOTHING`` inside the transaction that applies the effect causing it, so a replayed
or redelivered event never enqueues it twice. ``notify_deliveries`` holds one row per (notification,
sink) once that sink has it (``delivered``) or gave up and dead-lettered it (``dead_lettered``).
A notification is done (``done_at_ms`` set) when every sink it is meant for has a delivery row.

Several workers may share the database (a consumer group of several processes), each with its own
dispatcher: on PostgreSQL a dispatcher ``claim``s a notification (a row lock, ``FOR UPDATE SKIP
LOCKED``, held by its transaction while it delivers), so no two deliver the same one; a dispatcher
that dies lets go with its connection. SQLite is for one worker process (no claim).

All functions are synchronous and take a SQLAlchemy ``Connection`` (the caller owns the
transaction) or an ``Engine`` (the function runs its own short transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.sql.expression import Executable

from consumers.notify.model import Notification
from consumers.sqlstore import insert_ignore
from schemas.times import now_ms

__all__ = ["Outbox", "PendingNotification"]


@dataclass(frozen=True, slots=True)
class PendingNotification:
    notification: Notification
    done_sinks: frozenset[str]
    attempts: int


class Outbox:
    """The outbox tables, defined on a worker's ``MetaData``."""

    def __init__(self, metadata: MetaData) -> None:
        self.table = Table(
            "notify_outbox",
            metadata,
            Column("notification_id", String(64), primary_key=True),
            Column("kind", String(32), nullable=False),
            Column("vin", String(64)),
            Column("subject", Text, nullable=False),
            Column("details", Text, nullable=False),  # JSON
            Column("sinks", Text),  # comma-separated, NULL = all sinks
            Column("created_at_ms", BigInteger, nullable=False),
            Column("enqueued_at_ms", BigInteger, nullable=False),
            Column("done_at_ms", BigInteger, index=True),
            Column("attempts", Integer, nullable=False, default=0),
            Column("last_error", Text),
        )
        self.deliveries = Table(
            "notify_deliveries",
            metadata,
            Column("notification_id", String(64), primary_key=True),
            Column("sink", String(32), primary_key=True),
            Column("status", String(16), nullable=False),  # delivered | dead_lettered
            Column("at_ms", BigInteger, nullable=False),
        )

    # --- inside the effect's transaction ----------------------------------------------------------

    def enqueue(self, conn: Connection, n: Notification) -> bool:
        """Add ``n`` unless a notification with its id exists; True when it was added."""
        stmt = insert_ignore(conn.dialect.name, self.table).values(
            notification_id=n.notification_id,
            kind=n.kind,
            vin=n.vin,
            subject=n.subject,
            details=orjson.dumps(n.details).decode(),
            sinks=",".join(n.sinks) if n.sinks is not None else None,
            created_at_ms=n.created_at_ms,
            enqueued_at_ms=now_ms(),
            done_at_ms=None,
            attempts=0,
        )
        return (conn.execute(stmt).rowcount or 0) > 0

    # --- delivery side ----------------------------------------------------------------------------

    def pending(self, engine: Engine, limit: int = 100) -> list[PendingNotification]:
        """Notifications not yet done, oldest first, with the sinks that already have them."""
        t, d = self.table, self.deliveries
        with engine.connect() as conn:
            rows = conn.execute(
                select(t).where(t.c.done_at_ms.is_(None)).order_by(t.c.enqueued_at_ms, t.c.notification_id)
                .limit(limit)
            ).mappings().all()
            ids = [r["notification_id"] for r in rows]
            done: dict[str, set[str]] = {i: set() for i in ids}
            if ids:
                for nid, sink in conn.execute(select(d.c.notification_id, d.c.sink).where(d.c.notification_id.in_(ids))):
                    done[nid].add(sink)
        out = []
        for r in rows:
            n = Notification(
                notification_id=r["notification_id"],
                kind=r["kind"],
                subject=r["subject"],
                vin=r["vin"],
                created_at_ms=r["created_at_ms"],
                details=orjson.loads(r["details"]),
                sinks=tuple(r["sinks"].split(",")) if r["sinks"] is not None else None,
            )
            out.append(PendingNotification(n, frozenset(done[n.notification_id]), r["attempts"]))
        return out

    def claim(self, conn: Connection, notification_id: str) -> frozenset[str] | None:
        """In the caller's transaction: lock the notification for delivering it, skipping it when
        another dispatcher holds it; returns the sinks that already have it, or None when it is taken
        or done. ``record_failure`` and ``mark_done`` for it must then use this same ``conn``."""
        t, d = self.table, self.deliveries
        row = conn.execute(
            select(t.c.done_at_ms).where(t.c.notification_id == notification_id).with_for_update(skip_locked=True)
        ).first()
        if row is None or row.done_at_ms is not None:
            return None
        return frozenset(conn.execute(select(d.c.sink).where(d.c.notification_id == notification_id)).scalars())

    def record_delivery(self, engine: Engine, notification_id: str, sink: str, status: str) -> None:
        with engine.begin() as conn:
            conn.execute(
                insert_ignore(conn.dialect.name, self.deliveries).values(
                    notification_id=notification_id, sink=sink, status=status, at_ms=now_ms()
                )
            )

    def record_failure(self, target: Engine | Connection, notification_id: str, error: str) -> None:
        t = self.table
        _execute(target, update(t).where(t.c.notification_id == notification_id)
                 .values(attempts=t.c.attempts + 1, last_error=error[:2000]))

    def mark_done(self, target: Engine | Connection, notification_id: str) -> None:
        t = self.table
        _execute(target, update(t).where(t.c.notification_id == notification_id, t.c.done_at_ms.is_(None))
                 .values(done_at_ms=now_ms()))

    def counts(self, engine: Engine) -> dict[str, int]:
        """``{"pending": n, "done": n}`` for metrics and reports."""
        t = self.table
        with engine.connect() as conn:
            pending = conn.execute(select(func.count()).where(t.c.done_at_ms.is_(None))).scalar_one()
            total = conn.execute(select(func.count()).select_from(t)).scalar_one()
        return {"pending": int(pending), "done": int(total - pending)}

    def all_rows(self, engine: Engine) -> list[dict[str, object]]:
        """Every outbox row with its deliveries (tests, debugging)."""
        t, d = self.table, self.deliveries
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(t).order_by(t.c.enqueued_at_ms)).mappings()]
            deliveries: dict[str, dict[str, str]] = {}
            for nid, sink, status in conn.execute(select(d.c.notification_id, d.c.sink, d.c.status)):
                deliveries.setdefault(nid, {})[sink] = status
        for r in rows:
            r["deliveries"] = deliveries.get(str(r["notification_id"]), {})
        return rows


def _execute(target: Engine | Connection, stmt: Executable) -> None:
    """``stmt`` in the caller's transaction (a ``Connection``), or in a short one of its own."""
    if isinstance(target, Connection):
        target.execute(stmt)
        return
    with target.begin() as conn:
        conn.execute(stmt)
