"""Alert and error state in SQL: occurrences, their history, vehicle errors, and the outbox.

Tables (all created on start):

``alert_events``       one row per applied event (``event_id`` primary key): the idempotency ledger.
``alert_observations`` every alert entry of every event, as received (``(event_id, idx)`` key).
``alert_occurrences``  one row per occurrence, identity ``(vin, name, started_at_ms)``; active while
                       ``ended_at_ms`` is NULL.
``vehicle_errors``     every error entry with its tags (``(event_id, idx)`` key).
``notify_outbox`` / ``notify_deliveries``  see ``consumers.notify.outbox``.

Occurrence merging is order-independent: ``ended_at_ms`` is the earliest end seen (an end that
arrives before its start creates the occurrence already ended, and a later start-only event does
not re-open it; an end seen twice changes nothing), audiences are the union of those seen,
``first_seen_ms``/``last_seen_ms`` are the min/max event times. A notification is enqueued when an
occurrence is created and the rules say so, in the same transaction, with an id derived from the
occurrence identity, so replays and redeliveries never notify twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Select,
    Table,
    and_,
    select,
    update,
)

from consumers.alerts.events import AlertEntry, ParsedEvent
from consumers.alerts.rules import DEFAULT_RULES, Ruleset
from consumers.alerts.tables import (
    alert_events,
    alert_observations,
    alert_occurrences,
    metadata,
    outbox,
    vehicle_errors,
)
from consumers.notify.model import Notification, notification_id
from consumers.sqlstore import create_tables, insert_ignore, unseen_events
from schemas.times import format_ms, now_ms

__all__ = ["AlertStore", "ApplyResult"]


@dataclass
class ApplyResult:
    applied: int = 0
    duplicates: int = 0
    notifications: list[str] = field(default_factory=list)
    opened: int = 0
    closed: int = 0


@dataclass
class _Occ:
    vin: str
    name: str
    started_at_ms: int
    ended_at_ms: int | None
    audiences: list[str]
    details: dict[str, str]
    first_seen_ms: int
    last_seen_ms: int
    first_event_id: str
    end_event_id: str | None
    notification_id: str | None
    new: bool = False
    dirty: bool = False

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.vin, self.name, self.started_at_ms)

    def row(self) -> dict[str, Any]:
        return {
            "vin": self.vin,
            "name": self.name,
            "started_at_ms": self.started_at_ms,
            "ended_at_ms": self.ended_at_ms,
            "audiences": orjson.dumps(self.audiences).decode(),
            "details": orjson.dumps(self.details).decode(),
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "first_event_id": self.first_event_id,
            "end_event_id": self.end_event_id,
            "notification_id": self.notification_id,
        }

    @classmethod
    def from_row(cls, r: Any) -> _Occ:
        return cls(
            vin=r["vin"],
            name=r["name"],
            started_at_ms=r["started_at_ms"],
            ended_at_ms=r["ended_at_ms"],
            audiences=list(orjson.loads(r["audiences"])),
            details=dict(orjson.loads(r["details"])),
            first_seen_ms=r["first_seen_ms"],
            last_seen_ms=r["last_seen_ms"],
            first_event_id=r["first_event_id"],
            end_event_id=r["end_event_id"],
            notification_id=r["notification_id"],
        )


class AlertStore:
    """Applies parsed events to the database; one transaction per call."""

    def __init__(self, engine: Engine, rules: Ruleset = DEFAULT_RULES) -> None:
        self.engine = engine
        self.rules = rules
        self.outbox = outbox

    def create_tables(self) -> None:
        create_tables(self.engine, metadata)

    def apply(self, events: Sequence[ParsedEvent]) -> ApplyResult:
        """Apply ``events`` (any order, duplicates allowed) in one transaction."""
        result = ApplyResult()
        with self.engine.begin() as conn:
            fresh = self._claim_events(conn, events, result)
            occs = self._load_occurrences(conn, [(e.vin, a) for e in fresh for a in e.alerts])
            for ev in fresh:
                if ev.alerts:
                    self._apply_alerts(conn, ev, occs, result)
                if ev.errors:
                    conn.execute(
                        insert_ignore(conn.dialect.name, vehicle_errors),
                        [
                            {
                                "event_id": ev.event_id,
                                "idx": i,
                                "vin": ev.vin,
                                "name": er.name,
                                "created_at_ms": er.created_at_ms,
                                "body": er.body,
                                "tags": orjson.dumps(er.tags).decode(),
                            }
                            for i, er in enumerate(ev.errors)
                        ],
                    )
            self._flush_occurrences(conn, occs)
        return result

    # --- steps --------------------------------------------------------------------------------

    def _claim_events(self, conn: Connection, events: Sequence[ParsedEvent], result: ApplyResult) -> list[ParsedEvent]:
        """Record the events not applied before; returns them (first copy of each id)."""
        fresh, duplicates = unseen_events(conn, alert_events.c.event_id, events)
        result.duplicates += duplicates
        if fresh:
            applied_at = now_ms()
            conn.execute(
                insert_ignore(conn.dialect.name, alert_events),
                [
                    {
                        "event_id": e.event_id,
                        "type": e.type,
                        "vin": e.vin,
                        "created_at_ms": e.created_at_ms,
                        "is_cache": e.is_cache,
                        "applied_at_ms": applied_at,
                    }
                    for e in fresh
                ],
            )
        result.applied += len(fresh)
        return fresh

    def _load_occurrences(self, conn: Connection, entries: Iterable[tuple[str, AlertEntry]]) -> dict[tuple[str, str, int], _Occ]:
        keys = {(vin, a.name, a.started_at_ms) for vin, a in entries}
        occs: dict[tuple[str, str, int], _Occ] = {}
        if not keys:
            return occs
        t = alert_occurrences
        vins = sorted({k[0] for k in keys})
        names = sorted({k[1] for k in keys})
        rows = conn.execute(select(t).where(and_(t.c.vin.in_(vins), t.c.name.in_(names)))).mappings()
        for r in rows:
            k = (r["vin"], r["name"], r["started_at_ms"])
            if k in keys:
                occs[k] = _Occ.from_row(r)
        return occs

    def _apply_alerts(
        self, conn: Connection, ev: ParsedEvent, occs: dict[tuple[str, str, int], _Occ], result: ApplyResult
    ) -> None:
        conn.execute(
            insert_ignore(conn.dialect.name, alert_observations),
            [
                {
                    "event_id": ev.event_id,
                    "idx": i,
                    "vin": ev.vin,
                    "name": a.name,
                    "started_at_ms": a.started_at_ms,
                    "ended_at_ms": a.ended_at_ms,
                    "created_at_ms": ev.created_at_ms,
                    "raw": orjson.dumps(a.raw, default=str).decode(),
                }
                for i, a in enumerate(ev.alerts)
            ],
        )
        for a in ev.alerts:
            key = (ev.vin, a.name, a.started_at_ms)
            occ = occs.get(key)
            if occ is None:
                occ = _Occ(
                    vin=ev.vin,
                    name=a.name,
                    started_at_ms=a.started_at_ms,
                    ended_at_ms=a.ended_at_ms,
                    audiences=sorted(set(a.audiences)),
                    details=dict(a.details),
                    first_seen_ms=ev.created_at_ms,
                    last_seen_ms=ev.created_at_ms,
                    first_event_id=ev.event_id,
                    end_event_id=ev.event_id if a.ended_at_ms is not None else None,
                    notification_id=None,
                    new=True,
                    dirty=True,
                )
                occs[key] = occ
                result.opened += 1
                if a.ended_at_ms is not None:
                    result.closed += 1
            else:
                was_active = occ.ended_at_ms is None
                _merge(occ, ev, a)
                if was_active and occ.ended_at_ms is not None:
                    result.closed += 1
            if occ.notification_id is None:
                self._maybe_notify(conn, occ, ev, result)

    def _maybe_notify(self, conn: Connection, occ: _Occ, ev: ParsedEvent, result: ApplyResult) -> None:
        rule = self.rules.decide(occ.name, occ.audiences, occ.vin)
        if rule is None:
            return
        nid = notification_id("alert", occ.vin, occ.name, occ.started_at_ms)
        details: dict[str, Any] = {
            "vin": occ.vin,
            "name": occ.name,
            "audiences": occ.audiences,
            "started_at": format_ms(occ.started_at_ms, ""),
            "ended_at": format_ms(occ.ended_at_ms, "") if occ.ended_at_ms is not None else None,
            "active": occ.ended_at_ms is None,
            "event_id": ev.event_id,
            **occ.details,
        }
        text = occ.details.get("customerFacingMessage1") or occ.details.get("description") or ""
        subject = f"{occ.vin}: alert {occ.name}" + (f" - {text}" if text else "")
        if occ.ended_at_ms is not None:
            subject += " (already ended)"
        n = Notification(nid, "alert", subject, occ.vin, ev.created_at_ms, details, rule.sinks)
        if self.outbox.enqueue(conn, n):
            result.notifications.append(nid)
        occ.notification_id = nid
        occ.dirty = True

    def _flush_occurrences(self, conn: Connection, occs: dict[tuple[str, str, int], _Occ]) -> None:
        t = alert_occurrences
        for occ in occs.values():
            if not occ.dirty:
                continue
            if occ.new:
                inserted = conn.execute(insert_ignore(conn.dialect.name, t).values(**occ.row())).rowcount
                if inserted:
                    continue
                # Created concurrently by another worker (a rebalance overlap): merge into its row.
                r = conn.execute(
                    select(t).where(t.c.vin == occ.vin, t.c.name == occ.name, t.c.started_at_ms == occ.started_at_ms)
                ).mappings().one()
                other = _Occ.from_row(r)
                _merge_occ(other, occ)
                occ = other
            conn.execute(
                update(t)
                .where(t.c.vin == occ.vin, t.c.name == occ.name, t.c.started_at_ms == occ.started_at_ms)
                .values(**{k: v for k, v in occ.row().items() if k not in ("vin", "name", "started_at_ms")})
            )

    # --- queries ------------------------------------------------------------------------------

    def active(self, vin: str | None = None) -> list[dict[str, Any]]:
        """Active occurrences (no end seen), by VIN then start."""
        t = alert_occurrences
        q = select(t).where(t.c.ended_at_ms.is_(None))
        if vin:
            q = q.where(t.c.vin == vin)
        with self.engine.connect() as conn:
            return [_occ_dict(r) for r in conn.execute(q.order_by(t.c.vin, t.c.started_at_ms, t.c.name)).mappings()]

    def history(self, vin: str | None = None, since_ms: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Occurrences started at or after ``since_ms`` (newest first)."""
        t = alert_occurrences
        q = _since(t, t.c.started_at_ms, vin, since_ms)
        q = q.order_by(t.c.started_at_ms.desc(), t.c.vin, t.c.name).limit(limit)
        with self.engine.connect() as conn:
            return [_occ_dict(r) for r in conn.execute(q).mappings()]

    def errors(self, vin: str | None = None, since_ms: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        t = vehicle_errors
        q = _since(t, t.c.created_at_ms, vin, since_ms)
        q = q.order_by(t.c.created_at_ms.desc(), t.c.event_id, t.c.idx).limit(limit)
        with self.engine.connect() as conn:
            return [
                {**dict(r), "tags": orjson.loads(r["tags"]), "created_at": format_ms(r["created_at_ms"], "")}
                for r in conn.execute(q).mappings()
            ]

    def event_count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(alert_events)).scalar_one())


def _since(t: Table, time_col: Column[Any], vin: str | None, since_ms: int | None) -> Select[Any]:
    """``select(t)`` narrowed to one VIN (when given) and to rows with ``time_col >= since_ms``."""
    q = select(t)
    if vin:
        q = q.where(t.c.vin == vin)
    if since_ms is not None:
        q = q.where(time_col >= since_ms)
    return q


def _merge(occ: _Occ, ev: ParsedEvent, a: AlertEntry) -> None:
    """Fold one observation into an occurrence (order-independent)."""
    if a.ended_at_ms is not None and (occ.ended_at_ms is None or a.ended_at_ms < occ.ended_at_ms):
        occ.ended_at_ms = a.ended_at_ms
        occ.end_event_id = ev.event_id
        occ.dirty = True
    merged = sorted(set(occ.audiences) | set(a.audiences))
    if merged != occ.audiences:
        occ.audiences = merged
        occ.dirty = True
    for k, v in a.details.items():
        if k not in occ.details:
            occ.details[k] = v
            occ.dirty = True
    if ev.created_at_ms < occ.first_seen_ms:
        occ.first_seen_ms = ev.created_at_ms
        occ.dirty = True
    if ev.created_at_ms > occ.last_seen_ms:
        occ.last_seen_ms = ev.created_at_ms
        occ.dirty = True


def _merge_occ(into: _Occ, other: _Occ) -> None:
    if other.ended_at_ms is not None and (into.ended_at_ms is None or other.ended_at_ms < into.ended_at_ms):
        into.ended_at_ms, into.end_event_id = other.ended_at_ms, other.end_event_id
    into.audiences = sorted(set(into.audiences) | set(other.audiences))
    for k, v in other.details.items():
        into.details.setdefault(k, v)
    into.first_seen_ms = min(into.first_seen_ms, other.first_seen_ms)
    into.last_seen_ms = max(into.last_seen_ms, other.last_seen_ms)
    into.notification_id = into.notification_id or other.notification_id


def _occ_dict(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["audiences"] = orjson.loads(d["audiences"])
    d["details"] = orjson.loads(d["details"])
    d["started_at"] = format_ms(d["started_at_ms"], "")
    d["ended_at"] = format_ms(d["ended_at_ms"], "") if d["ended_at_ms"] is not None else None
    d["active"] = d["ended_at_ms"] is None
    return d
