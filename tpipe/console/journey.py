"""An event's journey: where one event went after the receiver took it.

received (the envelope's ``received_at``) → in Kafka at topic/partition/offset → in the lake (its
rows by ``event_id``, and whether the lake's stored position for that partition is past it, i.e. the
snapshot holding it is committed) → the alert or error rows it produced → the ledger row it produced.
Each lookup is by ``event_id`` in a store that exists; a store that does not is named, not created."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import TopicPartition
from sqlalchemy import select

from consumers.alerts.tables import alert_events, alert_observations, vehicle_errors
from consumers.credits.store import credit_events
from consumers.errors import StoreMissingError
from consumers.lake.scan import Window
from consumers.lake.snapshots import stored_offsets
from schemas.times import format_ms
from tpipe.console.stores import LakeStore, SqlStore

__all__ = ["Step", "journey"]

LAKE_TABLE = {"data": "telemetry", "state": "vehicle_state", "connectivity": "vehicle_state",
              "vehicle_data": "vehicle_data"}


@dataclass(slots=True)
class Step:
    what: str  # received, kafka, lake, alerts, credits
    state: str  # ok, waiting, missing, none
    text: str
    rows: list[dict[str, Any]] | None = None


def journey(env: dict[str, Any], position: tuple[str, int, int] | None, *, lake: LakeStore, lake_group: str,
            alerts: SqlStore, credits: SqlStore) -> list[Step]:
    """The steps of the event ``env`` (its envelope), read at ``position`` (topic, partition, offset)."""
    etype, event_id = str(env.get("type") or ""), str(env.get("event_id") or "")
    steps = [Step("received", "ok", f"received at {env.get('received_at') or '?'} "
                                    f"(created at {env.get('created_at') or '?'}, {env.get('source_format') or '?'})")]
    if position is not None:
        steps.append(Step("kafka", "ok", f"in Kafka at {position[0]} partition {position[1]} offset {position[2]}"))
    table = LAKE_TABLE.get(etype)
    if table is not None:
        steps.append(_lake_step(env, table, position, lake, lake_group))
    if etype in ("alerts", "errors"):
        steps.append(_alerts_step(event_id, alerts))
    if etype == "credits":
        steps.append(_credits_step(event_id, credits))
    return steps


def _lake_step(env: dict[str, Any], table: str, position: tuple[str, int, int] | None, lake: LakeStore,
               group: str) -> Step:
    try:
        created = datetime.fromtimestamp(int(env["created_at_ms"]) / 1000, UTC)
        window = Window(str(env.get("vin") or "") or None, created, created + timedelta(milliseconds=1))
        con = lake.connect(window, (table,))
        rows = con.execute(f"SELECT * FROM {table} WHERE event_id = $id", {"id": env.get("event_id")}).fetchall()
        columns = [d[0] for d in con.description] if con.description else []
        committed = None
        if position is not None:
            tbl = lake.tables().get(table)
            if tbl is not None:
                tp = TopicPartition(position[0], position[1])
                stored = stored_offsets(tbl, group, [tp]).get(tp)
                committed = stored is not None and stored > position[2]
    except (StoreMissingError, KeyError, ValueError) as exc:
        return Step("lake", "missing", f"lake: {exc}")
    shown = [{c: v for c, v in zip(columns, r, strict=True) if v is not None} for r in rows[:50]]
    if rows:
        return Step("lake", "ok", f"in the lake table {table}: {len(rows)} row(s)", shown)
    if committed:
        return Step("lake", "none", f"the lake's position on that partition is past it, with no row in {table} "
                                    "(dead-lettered, or an empty data object?)")
    return Step("lake", "waiting", f"not in the lake table {table} yet (the telemetry worker commits every few seconds)")


def _alerts_step(event_id: str, alerts: SqlStore) -> Step:
    try:
        engine = alerts.engine()
    except StoreMissingError as exc:
        return Step("alerts", "missing", str(exc))
    with engine.connect() as conn:
        applied = conn.execute(select(alert_events).where(alert_events.c.event_id == event_id)).mappings().first()
        obs = [dict(r) for r in conn.execute(select(alert_observations.c.vin, alert_observations.c.name,
                                                    alert_observations.c.started_at_ms, alert_observations.c.ended_at_ms)
                                             .where(alert_observations.c.event_id == event_id)).mappings()]
        errs = [dict(r) for r in conn.execute(select(vehicle_errors.c.vin, vehicle_errors.c.name,
                                                     vehicle_errors.c.created_at_ms)
                                              .where(vehicle_errors.c.event_id == event_id)).mappings()]
    if applied is None:
        return Step("alerts", "waiting", "not applied by the alerts worker yet")
    return Step("alerts", "ok", f"applied by the alerts worker at {format_ms(applied['applied_at_ms'], '')}: "
                                f"{len(obs)} alert and {len(errs)} error row(s)", obs + errs)


def _credits_step(event_id: str, credits: SqlStore) -> Step:
    try:
        engine = credits.engine()
    except StoreMissingError as exc:
        return Step("credits", "missing", str(exc))
    with engine.connect() as conn:
        row = conn.execute(select(credit_events).where(credit_events.c.event_id == event_id)).mappings().first()
    if row is None:
        return Step("credits", "waiting", "not in the credits ledger yet")
    return Step("credits", "ok", f"in the credits ledger: cost {row['cost']}, balance {row['balance']}", [dict(row)])
