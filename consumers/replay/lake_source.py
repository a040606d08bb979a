"""Reading history back out of the lake (for when Kafka's retention has passed).

The lake keeps ``data`` (table ``telemetry``: one row per event and field), ``state`` and
``connectivity`` (``vehicle_state``) and ``vehicle_data`` (``vehicle_data``). Rows are selected
by ``created_at`` and VIN (pyiceberg prunes the ``day(created_at)`` partitions), deduplicated like
the lake's own views (one row per ``(event_id, field)`` / ``event_id``, lowest Kafka position
wins) and turned back into envelopes with their original ``event_id``.

Exact payloads (rows written with the exact-replay columns, see ``consumers.lake.rows``):

    telemetry rows of one event_id -> {**payload_rest, "data": {field: value, ...}}
                                       value = loads(value_raw), or the typed columns when
                                       value_raw is NULL (they give it back exactly then);
                                       one row with field NULL: an empty data object
    vehicle_state                  -> loads(payload_json)
    vehicle_data                   -> {**payload_rest, "vehicle_data": loads(json)}

and the envelope's ``created_at`` is ``created_at_text``. The payload is then the one the receiver
built the ``event_id`` from, so re-POSTing it (``--to-url``) yields the same id.

Rows written before those columns existed (NULL there) are rebuilt from the typed columns:

    telemetry rows of one event_id -> {"createdAt", "vin", "data": {field: value, ...}}
    vehicle_state kind=state       -> {"createdAt", "vin", "state"}
    vehicle_state kind=connectivity-> {"createdAt", "vin", "networkInterface", "status"}
    vehicle_data                   -> {"createdAt", "vin", "vehicle_data": {...}}

which loses other top-level keys, the exact ``createdAt`` text and JSON number types; a receiver
that derives ids from the payload may compute another id for such events (see docs/replay.md).

Order: each source partition in Kafka offset order (the rows keep topic/partition/offset), merged
across partitions by event time, like a Kafka replay.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from consumers.lake.rows import value_from_columns
from consumers.replay.selection import ReplayEvent, Selection
from schemas.envelope import Envelope
from schemas.event_types import EventType, SourceFormat
from schemas.times import us_to_iso
from schemas.topics import headers_for, key_for

__all__ = ["LAKE_TABLE_OF", "LakeSource", "LakeTableCount", "value_from_columns"]

#: Event type -> the lake table holding it.
LAKE_TABLE_OF: dict[EventType, str] = {
    EventType.DATA: "telemetry",
    EventType.STATE: "vehicle_state",
    EventType.CONNECTIVITY: "vehicle_state",
    EventType.VEHICLE_DATA: "vehicle_data",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _legacy(row: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A payload rebuilt from the typed columns only (rows written before the exact-replay columns)."""
    payload: dict[str, Any] = {"createdAt": us_to_iso(row["_c_us"])}
    if row["vin"] is not None:
        payload["vin"] = row["vin"]
    payload.update(body)
    if row["is_cache"] is not None:
        payload["isCache"] = bool(row["is_cache"])
    return payload


def _data_payload(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The payload of one ``data`` event from its telemetry rows (deduplicated, one event_id).

    Each field's value is ``value_raw`` if set, else the typed columns (exact for rows of this
    version: ``value_raw`` is only NULL when they give the value back). A row with ``field`` NULL
    stands for an empty ``data`` object. With ``payload_rest`` the other top-level keys come back
    as sent; rows of an older writer (no ``payload_rest``) get the rebuilt ``createdAt``/``vin``/``isCache``."""
    data = {
        r["field"]: orjson.loads(r["value_raw"]) if r.get("value_raw") is not None else value_from_columns(r)
        for r in rows
        if r["field"] is not None
    }
    rest = rows[0].get("payload_rest")
    if rest is None:
        return _legacy(rows[0], {"data": data})
    payload: dict[str, Any] = orjson.loads(rest)
    payload["data"] = data
    return payload


@dataclass(slots=True)
class LakeTableCount:
    table: str
    rows: int = 0  # rows read (after dedup)
    events: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def _sql_in(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


class LakeSource:
    """``LakeSource(catalog_settings, sel).events()`` -> the selected events (synchronous reads)."""

    def __init__(self, catalog_settings: Any, selection: Selection) -> None:
        self.settings = catalog_settings
        self.sel = selection
        self.not_in_lake = [t for t in selection.types if t not in LAKE_TABLE_OF]
        self.missing_tables: list[str] = []
        self.counts: dict[str, LakeTableCount] = {}
        self._lanes: dict[tuple[str, int], list[tuple[int, int, Envelope]]] = {}

    def _row_filter(self) -> Any:
        from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, In, LessThan

        # pyiceberg's predicates take (term, literal) positionally; their pydantic-generated
        # signatures confuse mypy, hence the ignores.
        sel = self.sel
        expr: BooleanExpression = LessThan("created_at", _iso_literal(sel.to_ms))  # type: ignore[call-arg,arg-type]
        if sel.from_ms is not None:
            start = GreaterThanOrEqual("created_at", _iso_literal(sel.from_ms))  # type: ignore[call-arg,arg-type]
            expr = And(start, expr)
        if sel.vins:
            expr = And(expr, In("vin", sorted(sel.vins)))  # type: ignore[call-arg,arg-type]
        return expr

    def load(self) -> int:
        """Read and rebuild the selected events (kept in memory, by source partition); returns the count."""
        import duckdb

        from consumers.lake.readonly import open_lake
        from consumers.lake.tables import TABLES_BY_NAME

        wanted: dict[str, list[EventType]] = {}
        for t in self.sel.types:
            if t in LAKE_TABLE_OF:
                wanted.setdefault(LAKE_TABLE_OF[t], []).append(t)
        if not wanted:
            return 0
        tables = open_lake(self.settings)  # StoreMissingError when there is no lake: never creates one
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        row_filter = self._row_filter()
        total = 0
        for name, types in wanted.items():
            tbl = tables.get(name)
            count = self.counts.setdefault(name, LakeTableCount(name))
            if tbl is None:
                self.missing_tables.append(name)
                continue
            arrow = tbl.scan(row_filter=row_filter).to_arrow()
            con.register(f"_raw_{name}", arrow)
            keys = ", ".join(TABLES_BY_NAME[name].dedup_by)
            where = ""
            if name == "vehicle_state":
                where = f"WHERE kind IN ({_sql_in([t.value for t in types])})"
            rel = con.execute(
                f"SELECT *, epoch_us(created_at) AS _c_us, epoch_us(received_at) AS _r_us FROM _raw_{name} {where} "
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY kafka_topic, kafka_partition, kafka_offset) = 1 "
                "ORDER BY kafka_topic, kafka_partition, kafka_offset"
                + (", field" if name == "telemetry" else "")
            )
            cols = [d[0] for d in rel.description]
            rows = [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]
            count.rows = len(rows)
            for env, row in self._rebuild(name, rows):
                if not self.sel.in_window(env.created_at_ms):
                    continue
                lane = (row["kafka_topic"] or "", row["kafka_partition"] or 0)
                self._lanes.setdefault(lane, []).append((env.created_at_ms, row["kafka_offset"] or 0, env))
                count.events += 1
                count.by_type[env.type.value] = count.by_type.get(env.type.value, 0) + 1
                total += 1
        return total

    def _rebuild(self, table: str, rows: list[dict[str, Any]]) -> Iterator[tuple[Envelope, dict[str, Any]]]:
        if table == "telemetry":
            i = 0
            while i < len(rows):
                first = rows[i]
                j = i
                while j < len(rows) and rows[j]["event_id"] == first["event_id"]:
                    j += 1
                yield self._envelope(EventType.DATA, first, _data_payload(rows[i:j])), first
                i = j
            return
        for row in rows:
            if table == "vehicle_data":
                vd = orjson.loads(row["json"])
                rest = row.get("payload_rest")
                if rest is not None:
                    yield self._envelope(EventType.VEHICLE_DATA, row, {**orjson.loads(rest), "vehicle_data": vd}), row
                else:
                    yield self._envelope(EventType.VEHICLE_DATA, row, _legacy(row, {"vehicle_data": vd})), row
                continue
            etype = EventType.STATE if row["kind"] == "state" else EventType.CONNECTIVITY
            exact = row.get("payload_json")
            if exact is not None:
                yield self._envelope(etype, row, orjson.loads(exact)), row
            elif etype is EventType.STATE:
                yield self._envelope(etype, row, _legacy(row, {"state": row["state"]})), row
            else:
                body = {"networkInterface": row["network_interface"], "status": row["status"]}
                yield self._envelope(etype, row, _legacy(row, body)), row

    @staticmethod
    def _envelope(etype: EventType, row: dict[str, Any], payload: dict[str, Any]) -> Envelope:
        created = row.get("created_at_text")
        if created is None:
            created = us_to_iso(row["_c_us"])
        received_us = row["_r_us"] if row["_r_us"] is not None else row["_c_us"]
        fmt = row.get("source_format")
        return Envelope(
            event_id=row["event_id"], type=etype, vin=row["vin"], created_at=created,
            created_at_ms=row["_c_us"] // 1000, received_at=us_to_iso(received_us // 1000 * 1000),
            received_at_ms=received_us // 1000,
            source_format=SourceFormat(fmt) if fmt else SourceFormat.TESLEMETRY, payload=payload,
        )

    def events(self) -> Iterator[ReplayEvent]:
        """After ``load``: per source partition in offset order, merged by event time."""
        lanes = [sorted(self._lanes[k], key=lambda x: x[1]) for k in sorted(self._lanes)]
        for _ts, _off, env in heapq.merge(*lanes, key=lambda x: x[0]):
            yield ReplayEvent(
                type=env.type.value, vin=env.vin, created_at_ms=env.created_at_ms, key=key_for(env),
                value=env.to_json(), headers=headers_for(env), event_id=env.event_id,
            )


def _iso_literal(ms: int) -> str:
    """Epoch ms -> an ISO timestamp literal for pyiceberg filters."""
    return (_EPOCH + ms * 1000 * _US).isoformat()
