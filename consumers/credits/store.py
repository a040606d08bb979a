"""The credits ledger in SQL, the low-balance alarm, and the numbers of the report.

Tables (created on start):

``credit_events``  one row per ``credits`` event, ``event_id`` primary key: redeliveries are
                   ignored (``ON CONFLICT DO NOTHING``), so totals never count an event twice and do
                   not depend on arrival order (sums over the set; "current" = newest ``created_at``).
``credit_state``   the low-balance alarm: threshold, armed flag, and the cursor (``created_at_ms``,
                   ``event_id``) of the newest event it has evaluated.
``notify_outbox`` / ``notify_deliveries``  see ``consumers.notify.outbox``.

Low balance: the balance is *low* when it is below the threshold. Several workers may share the
ledger: each batch locks the alarm's row first, so the alarm runs one batch at a time. The alarm walks the events
newer than its cursor in ``created_at`` order: an armed alarm that meets a low balance enqueues one
notification (in the batch's transaction) and disarms; a disarmed alarm re-arms at the first
balance at or above the threshold. Events that arrive late (older than the cursor) are history,
not the current balance, and never fire it. When the alarm is first configured, or its threshold
changes, it starts armed at the newest event already in the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
    update,
)

from consumers.errors import InvalidEventError
from consumers.notify.model import Notification, notification_id
from consumers.notify.outbox import Outbox
from consumers.sqlstore import create_tables, insert_ignore, unseen_events
from schemas.times import day_of_ms, format_ms, now_ms

__all__ = ["ApplyResult", "CreditEvent", "CreditStore", "InvalidEventError", "metadata", "parse_event"]

metadata = MetaData()

credit_events = Table(
    "credit_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("created_at_ms", BigInteger, nullable=False, index=True),
    Column("day", String(10), nullable=False, index=True),  # UTC YYYY-MM-DD of created_at
    Column("vin", String(64)),
    Column("type", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("is_cache", Boolean, nullable=False),
    Column("quota", Text),  # JSON, opaque
    Column("received_at_ms", BigInteger, nullable=False),
)

credit_state = Table(
    "credit_state",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("threshold", BigInteger),
    Column("armed", Boolean, nullable=False),
    Column("cursor_ms", BigInteger),
    Column("cursor_event_id", String(64)),
    Column("last_balance", BigInteger),
    Column("fired", Integer, nullable=False, default=0),
    Column("updated_at_ms", BigInteger, nullable=False),
)

outbox = Outbox(metadata)

LOW_BALANCE_KEY = "low_balance"




@dataclass(frozen=True, slots=True)
class CreditEvent:
    event_id: str
    created_at_ms: int
    vin: str | None
    type: str
    name: str
    cost: int
    balance: int
    is_cache: bool
    quota: dict[str, Any] | None
    received_at_ms: int

    def row(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "created_at_ms": self.created_at_ms,
            "day": day_of_ms(self.created_at_ms),
            "vin": self.vin,
            "type": self.type,
            "name": self.name,
            "cost": self.cost,
            "balance": self.balance,
            "is_cache": self.is_cache,
            "quota": orjson.dumps(self.quota).decode() if self.quota else None,
            "received_at_ms": self.received_at_ms,
        }


def _int(v: Any, what: str) -> int:
    """An integer from an int, an integral float or a numeric string."""
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise InvalidEventError(f"credits.{what} must be an integer, got {v!r}")


def parse_event(env: Any) -> CreditEvent:
    """A ``credits`` ``Envelope`` as a ledger row; raises ``InvalidEventError``."""
    payload = env.payload
    c = payload.get("credits")
    if not isinstance(c, dict):
        raise InvalidEventError("credits must be an object")
    if "balance" not in c:
        raise InvalidEventError("credits.balance is missing")
    quota = c.get("quota")
    return CreditEvent(
        event_id=env.event_id,
        created_at_ms=env.created_at_ms,
        vin=env.vin or (payload.get("vin") if isinstance(payload.get("vin"), str) else None),
        type=str(c.get("type") or "unknown"),
        name=str(c.get("name") or c.get("type") or "unknown"),
        cost=_int(c.get("cost", 0), "cost"),
        balance=_int(c["balance"], "balance"),
        is_cache=payload.get("isCache") is True,
        quota=quota if isinstance(quota, dict) and quota else None,
        received_at_ms=env.received_at_ms,
    )


@dataclass
class ApplyResult:
    applied: int = 0
    duplicates: int = 0
    notifications: list[str] = field(default_factory=list)
    balance: int | None = None


@dataclass
class _Alarm:
    threshold: int
    armed: bool
    cursor_ms: int | None
    cursor_event_id: str | None
    last_balance: int | None
    fired: int


class CreditStore:
    """The ledger; ``apply`` runs one transaction per batch."""

    def __init__(self, engine: Engine, *, low_balance: int | None = None) -> None:
        self.engine = engine
        self.low_balance = low_balance
        self.outbox = outbox

    def create_tables(self) -> None:
        create_tables(self.engine, metadata)

    def apply(self, events: Sequence[CreditEvent]) -> ApplyResult:
        result = ApplyResult()
        with self.engine.begin() as conn:
            alarm = self._load_alarm(conn) if self.low_balance is not None else None
            fresh, duplicates = unseen_events(conn, credit_events.c.event_id, events)
            result.duplicates += duplicates
            if fresh:
                conn.execute(insert_ignore(conn.dialect.name, credit_events), [e.row() for e in fresh])
            result.applied = len(fresh)
            if alarm is not None:
                self._run_alarm(conn, alarm, result)
            newest = _newest(conn)
            result.balance = newest["balance"] if newest else None
        return result

    # --- low-balance alarm --------------------------------------------------------------------

    def _load_alarm(self, conn: Connection) -> _Alarm:
        """The alarm's state, locked until the batch commits: workers sharing the ledger run the
        alarm one batch after another (PostgreSQL: the row lock; SQLite: the write lock the insert
        takes), so two batches never both fire from the same state."""
        assert self.low_balance is not None
        conn.execute(insert_ignore(conn.dialect.name, credit_state).values(
            key=LOW_BALANCE_KEY, threshold=None, armed=False, fired=0, updated_at_ms=now_ms()))
        r = conn.execute(
            select(credit_state).where(credit_state.c.key == LOW_BALANCE_KEY).with_for_update()
        ).mappings().first()
        if r is not None and r["threshold"] == self.low_balance:
            return _Alarm(self.low_balance, r["armed"], r["cursor_ms"], r["cursor_event_id"], r["last_balance"], r["fired"])
        # New alarm or new threshold: armed, starting at the newest event already recorded (before
        # this batch), which is evaluated again so a threshold above the current balance fires.
        newest = _newest(conn)
        fired = r["fired"] if r is not None else 0
        if newest is None:
            return _Alarm(self.low_balance, True, None, None, None, fired)
        # cursor just before ``newest``: the empty event id sorts before every id at that instant
        alarm = _Alarm(self.low_balance, True, newest["created_at_ms"], "", None, fired)
        return alarm

    def _run_alarm(self, conn: Connection, alarm: _Alarm, result: ApplyResult) -> None:
        t = credit_events
        q = select(t.c.event_id, t.c.created_at_ms, t.c.balance, t.c.type, t.c.name, t.c.cost)
        if alarm.cursor_ms is not None:
            q = q.where(
                or_(
                    t.c.created_at_ms > alarm.cursor_ms,
                    and_(t.c.created_at_ms == alarm.cursor_ms, t.c.event_id > alarm.cursor_event_id),
                )
            )
        for r in conn.execute(q.order_by(t.c.created_at_ms, t.c.event_id)).mappings():
            low = r["balance"] < alarm.threshold
            if alarm.armed and low:
                nid = notification_id("low_balance", r["event_id"], alarm.threshold)
                n = Notification(
                    nid,
                    "low_balance",
                    f"Teslemetry credit balance {r['balance']} is below {alarm.threshold}",
                    None,
                    r["created_at_ms"],
                    {
                        "balance": r["balance"],
                        "threshold": alarm.threshold,
                        "event_id": r["event_id"],
                        "created_at": format_ms(r["created_at_ms"], ""),
                        "type": r["type"],
                        "name": r["name"],
                        "cost": r["cost"],
                    },
                )
                if self.outbox.enqueue(conn, n):
                    result.notifications.append(nid)
                alarm.armed = False
                alarm.fired += 1
            elif not alarm.armed and not low:
                alarm.armed = True
            alarm.cursor_ms, alarm.cursor_event_id, alarm.last_balance = r["created_at_ms"], r["event_id"], r["balance"]
        values = {
            "threshold": alarm.threshold,
            "armed": alarm.armed,
            "cursor_ms": alarm.cursor_ms,
            "cursor_event_id": alarm.cursor_event_id,
            "last_balance": alarm.last_balance,
            "fired": alarm.fired,
            "updated_at_ms": now_ms(),
        }
        done = conn.execute(update(credit_state).where(credit_state.c.key == LOW_BALANCE_KEY).values(**values))
        if not done.rowcount:
            conn.execute(insert_ignore(conn.dialect.name, credit_state).values(key=LOW_BALANCE_KEY, **values))

    def alarm_state(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(credit_state).where(credit_state.c.key == LOW_BALANCE_KEY)).mappings().first()
        return dict(r) if r is not None else None

    # --- report numbers -----------------------------------------------------------------------

    def current(self) -> dict[str, Any] | None:
        """The newest event by ``created_at`` (its balance is the current balance)."""
        with self.engine.connect() as conn:
            return _newest(conn)

    def totals(self) -> dict[str, int]:
        """Events, total cost, and snapshots (``isCache``) in the ledger."""
        t = credit_events
        with self.engine.connect() as conn:
            n, cost, cached = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(t.c.cost), 0),
                    func.coalesce(func.sum(func.cast(t.c.is_cache, Integer)), 0),
                )
            ).one()
        return {"events": int(n), "cost": int(cost), "snapshots": int(cached)}

    def usage_by_day(self, since_ms: int | None = None, until_ms: int | None = None) -> list[dict[str, Any]]:
        """Per UTC day: events, cost, and the end-of-day balance (newest event of the day)."""
        t = credit_events
        cond = []
        if since_ms is not None:
            cond.append(t.c.created_at_ms >= since_ms)
        if until_ms is not None:
            cond.append(t.c.created_at_ms < until_ms)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.day, func.count(), func.coalesce(func.sum(t.c.cost), 0))
                .where(*cond).group_by(t.c.day).order_by(t.c.day)
            ).all()
            # End-of-day balance: the newest event of each day (ties: highest event_id).
            last = conn.execute(
                select(t.c.day, t.c.created_at_ms, t.c.event_id, t.c.balance).where(*cond)
                .order_by(t.c.day, t.c.created_at_ms, t.c.event_id)
            ).all()
        eod: dict[str, int] = {}
        for day, _ms, _eid, balance in last:
            eod[day] = int(balance)
        return [{"day": d, "events": int(n), "cost": int(c), "balance": eod.get(d)} for d, n, c in rows]

    def usage_by_type(self, since_ms: int | None = None, until_ms: int | None = None) -> list[dict[str, Any]]:
        t = credit_events
        cond = [t.c.created_at_ms >= since_ms] if since_ms is not None else []
        if until_ms is not None:
            cond.append(t.c.created_at_ms < until_ms)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.type, func.count(), func.coalesce(func.sum(t.c.cost), 0))
                .where(*cond).group_by(t.c.type).order_by(func.coalesce(func.sum(t.c.cost), 0).desc(), t.c.type)
            ).all()
        return [{"type": ty, "events": int(n), "cost": int(c)} for ty, n, c in rows]

    def balance_before(self, ms: int) -> int | None:
        """The balance of the newest event created before ``ms``."""
        t = credit_events
        with self.engine.connect() as conn:
            v = conn.execute(
                select(t.c.balance).where(t.c.created_at_ms < ms)
                .order_by(t.c.created_at_ms.desc(), t.c.event_id.desc()).limit(1)
            ).scalar()
        return None if v is None else int(v)

    def cost_between(self, since_ms: int, until_ms: int) -> int:
        t = credit_events
        with self.engine.connect() as conn:
            v = conn.execute(
                select(func.coalesce(func.sum(t.c.cost), 0)).where(
                    t.c.created_at_ms >= since_ms, t.c.created_at_ms < until_ms
                )
            ).scalar_one()
        return int(v)


def _newest(conn: Connection) -> dict[str, Any] | None:
    t = credit_events
    r = conn.execute(select(t).order_by(t.c.created_at_ms.desc(), t.c.event_id.desc()).limit(1)).mappings().first()
    return dict(r) if r is not None else None
