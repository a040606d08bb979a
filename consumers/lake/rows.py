"""Envelope -> lake rows (pure: no I/O). One function per table, each returns a list of row dicts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from consumers.runtime import PoisonRecordError, WorkerRecord
from schemas.fields import coerce_value

Row = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_to_us(s: str, fallback_ms: int) -> int:
    """Epoch µs of an ISO-8601 timestamp (sub-µs digits dropped); ``fallback_ms`` when unparseable."""
    try:
        dt = datetime.fromisoformat(s)
    except (ValueError, TypeError):
        return fallback_ms * 1000
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    # fromisoformat keeps at most 6 fractional digits; created_at_ms is authoritative to the ms
    return us if us // 1000 == fallback_ms else fallback_ms * 1000


def _common(rec: WorkerRecord) -> Row:
    env = rec.envelope
    return {
        "event_id": env.event_id,
        "vin": env.vin,
        "created_at": iso_to_us(env.created_at, env.created_at_ms),
        "received_at": env.received_at_ms * 1000,
        "is_cache": bool(env.payload.get("isCache")) if "isCache" in env.payload else None,
        "kafka_topic": rec.topic,
        "kafka_partition": rec.partition,
        "kafka_offset": rec.offset,
    }


def telemetry_rows(rec: WorkerRecord) -> list[Row]:
    """One row per field of a ``data`` event (null values kept as all-null value columns)."""
    data = rec.envelope.payload.get("data")
    if not isinstance(data, dict):
        raise PoisonRecordError(f"data event without a data object (got {type(data).__name__})")
    base = _common(rec)
    out: list[Row] = []
    for field, value in data.items():
        tv = coerce_value(str(field), value)
        row = dict(base)
        row["field"] = str(field)
        row.update(tv._asdict())
        out.append(row)
    return out


def _str_or_none(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def vehicle_state_rows(rec: WorkerRecord) -> list[Row]:
    """``state`` -> kind 'state' + state; ``connectivity`` -> network_interface + status."""
    p = rec.envelope.payload
    kind = str(rec.envelope.type)
    row = _common(rec)
    row.update(kind=kind, state=None, network_interface=None, status=None)
    if kind == "state":
        if "state" not in p:
            raise PoisonRecordError("state event without a state")
        row["state"] = _str_or_none(p.get("state"))
    elif kind == "connectivity":
        row["network_interface"] = _str_or_none(p.get("networkInterface"))
        row["status"] = _str_or_none(p.get("status"))
    else:
        raise PoisonRecordError(f"not a vehicle_state event: {kind}")
    return [row]


def vehicle_data_rows(rec: WorkerRecord) -> list[Row]:
    """The ``vehicle_data`` object as JSON text (sorted keys)."""
    p = rec.envelope.payload
    if "vehicle_data" not in p:
        raise PoisonRecordError("vehicle_data event without vehicle_data")
    row = _common(rec)
    row["json"] = orjson.dumps(p["vehicle_data"], option=orjson.OPT_SORT_KEYS).decode()
    return [row]


ROW_BUILDERS: dict[str, Callable[[WorkerRecord], list[Row]]] = {
    "telemetry": telemetry_rows,
    "vehicle_state": vehicle_state_rows,
    "vehicle_data": vehicle_data_rows,
}
