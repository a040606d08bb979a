"""Envelope -> lake rows (pure: no I/O). One ``Shape`` per table: which columns hold one value per
event, which one per row, and the builder giving both as tuples (``consumers.lake.arrow_buffer`` turns
them into Arrow chunks; ``Shape.dicts`` gives them as row dicts). For ``telemetry`` the worker's default
is the native builder (``consumers.lake.native``); this one is the reference it is tested against.

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
from dataclasses import dataclass
from typing import Any

import orjson

from consumers.runtime import PoisonRecordError, WorkerRecord
from plumbing.metrics import LAKE_VALUES_MISTYPED
from schemas.fields import FIELD_KINDS, TYPED_KINDS, TypedValue, coerce_value, is_mistyped
from schemas.times import iso_to_us

Row = dict[str, Any]


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


#: Columns every table has, one value per event (``_common``'s order).
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "vin", "created_at", "received_at", "is_cache",
    "kafka_topic", "kafka_partition", "kafka_offset", "created_at_text", "source_format",
)
#: Where ``event_id``, ``kafka_topic``, ``kafka_partition`` and ``kafka_offset`` sit in an event tuple.
EVENT_ID_AT, TOPIC_AT, PARTITION_AT, OFFSET_AT = (
    EVENT_COLUMNS.index(c) for c in ("event_id", "kafka_topic", "kafka_partition", "kafka_offset")
)

EventValues = tuple[Any, ...]
RowValues = tuple[Any, ...]
#: A builder's answer: the event's values (``Shape.event_columns`` order) and either its rows'
#: values (``Shape.row_columns`` order, one tuple per row) or None for exactly one row.
Built = tuple[EventValues, list[RowValues] | None]


@dataclass(frozen=True)
class Shape:
    """How one table's rows come out of a record: columns with one value per event, columns with
    one value per row (empty: one row per event), and the builder. Builders raise (a poison record)
    before returning anything, so a buffer never holds part of an event."""

    event_columns: tuple[str, ...]
    row_columns: tuple[str, ...]
    build: Callable[[WorkerRecord], Built]

    def dicts(self, rec: WorkerRecord) -> list[Row]:
        """The rows of ``rec`` as dicts (column -> value)."""
        ev, rows = self.build(rec)
        base = dict(zip(self.event_columns, ev, strict=True))
        if rows is None:
            return [base]
        return [{**base, **dict(zip(self.row_columns, r, strict=True))} for r in rows]


def _common(rec: WorkerRecord) -> EventValues:
    env = rec.envelope
    p = env.payload
    return (
        env.event_id,
        env.vin,
        iso_to_us(env.created_at, env.created_at_ms),
        env.received_at_ms * 1000,
        bool(p.get("isCache")) if "isCache" in p else None,
        rec.topic,
        rec.partition,
        rec.offset,
        env.created_at,
        str(env.source_format),
    )


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
# kinds whose coercion is by JSON type alone (None: a field the catalog does not know)
_BY_TYPE = frozenset({"any", "enum", "string", "json", None})
_LONG_KINDS = frozenset({"long", "epoch_s"})
_EMPTY_DATA_ROW: RowValues = (None,) * 9


def telemetry_event(rec: WorkerRecord) -> tuple[EventValues, dict[str, Any]]:
    """The per-event values of a ``data`` record (``SHAPES["telemetry"].event_columns`` order) and
    its ``data`` object; raises ``PoisonRecordError`` when ``data`` is not an object. Shared by this
    builder and the native one (``consumers.lake.native``)."""
    payload = rec.envelope.payload
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PoisonRecordError(f"data event without a data object (got {type(data).__name__})")
    return (*_common(rec), _json({k: v for k, v in payload.items() if k != "data"})), data


def _telemetry(rec: WorkerRecord) -> Built:
    """One row per field of a ``data`` event (null values kept as all-null value columns); an empty
    ``data`` object gives one row with ``field`` NULL, so the event is kept.

    The common value shapes (a float, bool, string or in-range int the catalog kind takes as it is)
    are written out here; they are exactly what ``coerce_value`` + ``_raw_unless_typed_tv`` give
    them (tests/test_lake_rows.py checks both ways agree). Everything else goes through those two."""
    ev, data = telemetry_event(rec)
    if not data:
        return ev, [_EMPTY_DATA_ROW]
    kind_of = FIELD_KINDS.get
    by_type = _BY_TYPE
    out: list[RowValues] = []
    append = out.append
    for field, value in data.items():
        name = field if type(field) is str else str(field)
        t = type(value)
        kind = kind_of(name)
        if t is float:
            if kind == "double" or kind in by_type:
                append((name, value, None, None, None, None, None, None, None))
                continue
        elif t is bool:
            if kind == "bool" or kind in by_type:
                append((name, None, None, value, None, None, None, None, None))
                continue
        elif t is str:
            if kind in by_type:
                append((name, None, None, None, value, None, None, None, None))
                continue
        elif t is int and (kind in _LONG_KINDS or kind in by_type) and _I64_MIN <= value <= _I64_MAX:
            append((name, None, value, None, None, None, None, None, None))
            continue
        tv = coerce_value(name, value)
        if kind in TYPED_KINDS and is_mistyped(kind, tv):  # the fast paths above are all well typed
            LAKE_VALUES_MISTYPED.labels(name).inc()
        append((name, *tv, _raw_unless_typed_tv(value, tv)))
    return ev, out


def _str_or_none(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _vehicle_state(rec: WorkerRecord) -> Built:
    """``state`` -> kind 'state' + state; ``connectivity`` -> network_interface + status."""
    p = rec.envelope.payload
    kind = str(rec.envelope.type)
    state = network_interface = status = None
    if kind == "state":
        if "state" not in p:
            raise PoisonRecordError("state event without a state")
        state = _str_or_none(p.get("state"))
    elif kind == "connectivity":
        network_interface = _str_or_none(p.get("networkInterface"))
        status = _str_or_none(p.get("status"))
    else:
        raise PoisonRecordError(f"not a vehicle_state event: {kind}")
    return (*_common(rec), kind, state, network_interface, status, _json(p)), None


def _vehicle_data(rec: WorkerRecord) -> Built:
    """The ``vehicle_data`` object as JSON text (sorted keys)."""
    p = rec.envelope.payload
    if "vehicle_data" not in p:
        raise PoisonRecordError("vehicle_data event without vehicle_data")
    vd = orjson.dumps(p["vehicle_data"], option=orjson.OPT_SORT_KEYS).decode()
    return (*_common(rec), vd, _json({k: v for k, v in p.items() if k != "vehicle_data"})), None


SHAPES: dict[str, Shape] = {
    "telemetry": Shape(
        (*EVENT_COLUMNS, "payload_rest"),
        ("field", "value_double", "value_long", "value_bool", "value_string",
         "latitude", "longitude", "value_json", "value_raw"),
        _telemetry,
    ),
    "vehicle_state": Shape(
        (*EVENT_COLUMNS, "kind", "state", "network_interface", "status", "payload_json"), (), _vehicle_state
    ),
    "vehicle_data": Shape((*EVENT_COLUMNS, "json", "payload_rest"), (), _vehicle_data),
}


def telemetry_rows(rec: WorkerRecord) -> list[Row]:
    return SHAPES["telemetry"].dicts(rec)


def vehicle_state_rows(rec: WorkerRecord) -> list[Row]:
    return SHAPES["vehicle_state"].dicts(rec)


def vehicle_data_rows(rec: WorkerRecord) -> list[Row]:
    return SHAPES["vehicle_data"].dicts(rec)
