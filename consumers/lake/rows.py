"""Envelope -> lake rows (pure: no I/O). One function per table, each returns a list of row dicts.

Besides the typed columns analysts query, every row keeps what a lake replay needs to give the
payload back exactly (so a receiver recomputes the same ``event_id`` from it):

* ``created_at_text``: the envelope's ``created_at`` as sent (nanosecond digits, offsets ...);
* ``source_format``: the envelope's source format;
* ``telemetry.value_raw``: the field's value as JSON (orjson of the decoded value: ``50`` stays
  ``50``, ``"34.797"`` stays a string), but only when the typed columns would not give it back
  exactly (``value_from_columns``); NULL when they do (most values), to keep the table small;
* ``telemetry.payload_rest`` / ``vehicle_data.payload_rest``: the payload without ``data`` /
  ``vehicle_data`` as JSON (``createdAt``, ``vin``, ``isCache``, ``hec``, unknown keys), on every
  row of the event;
* ``vehicle_state.payload_json``: the whole payload as JSON.

A ``data`` event with an empty ``data`` object becomes one ``telemetry`` row with ``field`` NULL
(the ``telemetry`` view hides it; the lake replay rebuilds the event from it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from consumers.runtime import PoisonRecordError, WorkerRecord
from schemas.fields import TypedValue, coerce_value

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


def _json(v: Any) -> str:
    """Compact JSON text of a decoded JSON value; ``orjson.loads`` gives back an equal value of the same types."""
    return orjson.dumps(v).decode()


def value_from_columns(row: Mapping[str, Any]) -> Any:
    """A field's value back from the typed columns (``schemas.fields.coerce_value``, reversed).

    Storage contract: ``value_raw`` is NULL exactly when this gives the sent value back (same JSON
    up to key order), so the lake replay may rely on it. Do not change what it returns for rows
    already written."""
    if row["value_json"] is not None:
        return orjson.loads(row["value_json"])
    if row["value_string"] is not None:  # also location strings (their lat/lon are derived)
        return row["value_string"]
    if row["value_bool"] is not None:
        return bool(row["value_bool"])
    if row["value_long"] is not None:
        return int(row["value_long"])
    if row["value_double"] is not None:
        return float(row["value_double"])
    return None


def _raw_unless_typed(value: Any, typed: Row) -> str | None:
    """``value``'s JSON when the typed columns do not give it back exactly, else None."""
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if orjson.dumps(value_from_columns(typed), option=orjson.OPT_SORT_KEYS) == raw:
        return None
    return _json(value)


def _raw_unless_typed_tv(value: Any, tv: TypedValue) -> str | None:
    """``_raw_unless_typed(value, tv._asdict())``, without the dict and, for the common scalar
    cases, without the two JSON encodings (same answer: equal str / bool / int values of the same
    type encode equally, and a float given back as the very same object does too)."""
    if value is None:  # coerce_value gives all-null columns, which give None back
        return None
    vd, vl, vb, vs, _lat, _lon, vj = tv
    if vj is not None:
        return _raw_unless_typed(value, tv._asdict())
    if vs is not None:
        back: Any = vs
    elif vb is not None:
        back = bool(vb)
    elif vl is not None:
        back = int(vl)
    elif vd is not None:
        back = float(vd)
    else:
        back = None
    t = type(value)
    if t is type(back):
        if t is str or t is bool or t is int:
            return None if value == back else _json(value)
        if value is back:
            return None
    return _raw_unless_typed(value, tv._asdict())


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
        "created_at_text": env.created_at,
        "source_format": str(env.source_format),
    }


_NO_VALUE: Row = TypedValue()._asdict()


def telemetry_rows(rec: WorkerRecord) -> list[Row]:
    """One row per field of a ``data`` event (null values kept as all-null value columns); an empty
    ``data`` object gives one row with ``field`` NULL, so the event is kept."""
    payload = rec.envelope.payload
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PoisonRecordError(f"data event without a data object (got {type(data).__name__})")
    base = _common(rec)
    base["payload_rest"] = _json({k: v for k, v in payload.items() if k != "data"})
    if not data:
        return [{**base, "field": None, **_NO_VALUE, "value_raw": None}]
    out: list[Row] = []
    for field, value in data.items():
        name = str(field)
        tv = coerce_value(name, value)
        row = base.copy()
        row["field"] = name
        (row["value_double"], row["value_long"], row["value_bool"], row["value_string"],
         row["latitude"], row["longitude"], row["value_json"]) = tv
        row["value_raw"] = _raw_unless_typed_tv(value, tv)
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
    row["payload_json"] = _json(p)
    return [row]


def vehicle_data_rows(rec: WorkerRecord) -> list[Row]:
    """The ``vehicle_data`` object as JSON text (sorted keys)."""
    p = rec.envelope.payload
    if "vehicle_data" not in p:
        raise PoisonRecordError("vehicle_data event without vehicle_data")
    row = _common(rec)
    row["json"] = orjson.dumps(p["vehicle_data"], option=orjson.OPT_SORT_KEYS).decode()
    row["payload_rest"] = _json({k: v for k, v in p.items() if k != "vehicle_data"})
    return [row]


ROW_BUILDERS: dict[str, Callable[[WorkerRecord], list[Row]]] = {
    "telemetry": telemetry_rows,
    "vehicle_state": vehicle_state_rows,
    "vehicle_data": vehicle_data_rows,
}
