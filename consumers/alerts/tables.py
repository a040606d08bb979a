"""The alerts worker's SQL tables (SQLite or PostgreSQL; all created on start)::

    alert_events         one row per applied event (``event_id`` primary key): the idempotency ledger
    alert_observations   every alert entry of every event, as received (``(event_id, idx)`` key)
    alert_occurrences    one row per occurrence, identity ``(vin, name, started_at_ms)``; active while
                         ``ended_at_ms`` is NULL
    vehicle_errors       every error entry with its tags (``(event_id, idx)`` key)
    notify_outbox / notify_deliveries   see ``consumers.notify.outbox``
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, MetaData, String, Table, Text

from consumers.notify.outbox import Outbox

__all__ = ["alert_events", "alert_observations", "alert_occurrences", "metadata", "outbox", "vehicle_errors"]

metadata = MetaData()

alert_events = Table(
    "alert_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("vin", String(64)),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("is_cache", Boolean, nullable=False, default=False),
    Column("applied_at_ms", BigInteger, nullable=False),
)

alert_observations = Table(
    "alert_observations",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("vin", String(64), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("ended_at_ms", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("raw", Text, nullable=False),
)

alert_occurrences = Table(
    "alert_occurrences",
    metadata,
    Column("vin", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("started_at_ms", BigInteger, primary_key=True),
    Column("ended_at_ms", BigInteger, index=True),
    Column("audiences", Text, nullable=False),  # JSON list
    Column("details", Text, nullable=False),  # JSON: description, messages, condition...
    Column("first_seen_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("first_event_id", String(64), nullable=False),
    Column("end_event_id", String(64)),
    Column("notification_id", String(64)),
)

vehicle_errors = Table(
    "vehicle_errors",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("vin", String(64), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False, index=True),
    Column("body", Text),
    Column("tags", Text, nullable=False),  # JSON object
)

outbox = Outbox(metadata)
