"""The lake's test corpus: every fixture's events, edge values of every field kind, and the
exact-replay stream (every way a payload can differ from what the typed columns hold)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from consumers.lake.tables import TABLES_BY_NAME
from schemas.envelope import Envelope
from schemas.fields import FIELDS
from schemas.parse import parse_body
from tests.support.paths import FIXTURES

TABLE_OF = {t: name for name, tdef in TABLES_BY_NAME.items() for t in tdef.event_types}

MS = 1_767_225_600_000


def _envs(body: bytes, ms: int = MS) -> list[Envelope]:
    return parse_body(body, received_at_ms=ms)


def _data(vin: str | None, ms_offset: int, data: Any, **extra: Any) -> Envelope:
    from schemas.times import ms_to_iso

    obj: dict[str, Any] = {"createdAt": ms_to_iso(MS + ms_offset), "data": data, **extra}
    if vin is not None:
        obj["vin"] = vin
    (env,) = _envs(orjson.dumps(obj))
    return env


def _fixture_envs() -> list[Envelope]:
    out: list[Envelope] = []
    for p in sorted(FIXTURES.rglob("*.json")) + sorted(FIXTURES.rglob("*.ndjson")):
        out.extend(e for e in _envs(p.read_bytes()) if str(e.type) in TABLE_OF)
    return out


#: values of every kind in every shape the inline paths and the general path must agree on
EDGE_VALUES: list[Any] = [
    1.5, 0.0, -0.0, 1e300, 3, 0, 1, -7, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), True, False,
    "12.5", "7", "true", "FALSE", " 1 ", "x", "", "(37.41 N, 122.14 W)", "nan", "1e400",
    None, [1, "a"], {"latitude": 1.0, "longitude": "2"}, {"b": 1, "a": [None]},
]


def _edge_envs() -> list[Envelope]:
    kinds: dict[str, str] = {}
    for name, spec in FIELDS.items():
        kinds.setdefault(spec.kind, name)
    names = [*kinds.values(), "NotInTheCatalog"]
    envs = [_data(f"5YJ3EDGE{i:09d}", i, {n: v for n in names}) for i, v in enumerate(EDGE_VALUES)]
    envs.append(_data("5YJ3EDGE000000100", 100, {}))  # empty data object: one row, field NULL
    envs.append(_data("5YJ3EDGE000000101", 101, {"Soc": 1.0}, isCache=True, extra={"k": 1}))
    return envs



MIN = 60_000
VIN_A, VIN_B = "5YJ3E1EA7KF000101", "5YJYGDEE1LF000102"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sorted_json(payload: dict[str, Any]) -> bytes:
    """What the event id hashes: key order does not matter, JSON number types and text do."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def nano(ms: int, extra: str = "456789") -> str:
    """An ISO timestamp with nanosecond digits (more than the lake's µs timestamps hold)."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}{extra}Z"


def _offset(ms: int) -> str:
    """The same instant written with a +02:00 offset."""
    dt = (_EPOCH + timedelta(milliseconds=ms)).astimezone(UTC).replace(tzinfo=None) + timedelta(hours=2)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+02:00"


def build_bodies(t: int) -> list[tuple[Any, int]]:
    """(webhook body, received_at_ms): every way a payload can differ from what the typed columns hold."""
    first = {
        "createdAt": nano(t), "vin": VIN_A, "isCache": True,
        "data": {
            "BatteryLevel": 50, "VehicleSpeed": 50.0, "Odometer": "10423.60", "Soc": "80", "Locked": "true",
            "Gear": "ShiftStateD", "MinutesToArrival": None, "EstBatteryRange": 1e-7, "BigCount": 2**62,
            "Location": {"latitude": 37.5, "longitude": -122.25},
            "DoorState": {"DriverFront": False, "TrunkRear": True},
            "BrandNewField": {"x": [1, 2.0, "3", None]},
        },
    }
    return [
        (first, t + 500),
        ({"createdAt": nano(t + 1 * MIN, "000001"), "vin": VIN_A, "data": {}, "isCache": False}, t + MIN),  # empty
        ({"createdAt": _offset(t + 2 * MIN), "vin": VIN_B, "data": {"VehicleSpeed": 0}, "isResend": False,
          "connectionId": "c-7", "unknownTop": {"k": [1, None]}}, t + 2 * MIN),  # raw-format keys, unknown key
        ({"createdAt": nano(t + 3 * MIN), "vin": VIN_B, "data": [  # Tesla raw datums (decoded by the parser)
            {"key": "VehicleSpeed", "value": {"doubleValue": 12.5}},
            {"key": "Odometer", "value": {"longValue": "123456"}},
            {"key": "Gear", "value": {"stringValue": "ShiftStateR"}},
        ]}, t + 3 * MIN),
        ({"createdAt": t + 4 * MIN + 7, "vin": VIN_A, "data": {"Soc": 81.5}}, t + 4 * MIN),  # epoch ms number
        ({"time": (t + 5 * MIN + 123) / 1000, "host": "ft-1", "source": VIN_A, "sourcetype": "_json",  # Splunk
          "event": {"VehicleSpeed": 30, "ChargerVoltage": "238.0"}}, t + 5 * MIN),
        ({"time": (t + 6 * MIN) / 1000, "source": VIN_B, "index": "tesla",  # Splunk, wrapped Teslemetry event
          "event": {"createdAt": nano(t + 6 * MIN, "999999"), "data": {"BatteryLevel": 70}}}, t + 6 * MIN),
        ({"createdAt": nano(t + 7 * MIN), "vin": VIN_A, "state": "online", "isCache": False}, t + 7 * MIN),
        ({"createdAt": nano(t + 8 * MIN), "vin": VIN_A, "networkInterface": "wifi", "status": "CONNECTED",
          "connectionId": "c-1", "extra": 1}, t + 8 * MIN),
        ({"createdAt": nano(t + 9 * MIN), "vin": VIN_B, "vehicle_data": {
            "vin": VIN_B, "state": "online", "display_name": None,
            "charge_state": {"battery_level": 70, "charge_rate": 0.0, "charger_voltage": 2, "est": "1.50"},
        }, "isCache": True, "note": "x"}, t + 9 * MIN),
        ({"createdAt": nano(t + 10 * MIN), "vin": VIN_B, "state": "asleep", "data": {"Gear": None}},  # -> 2 events
         t + 10 * MIN),
        (first, t + 11 * MIN),  # a redelivered webhook: same event id, stored once
    ]


def parse_stream(t: int) -> list[Envelope]:
    out: list[Envelope] = []
    for body, received in build_bodies(t):
        out.extend(parse_body(orjson.dumps(body), received_at_ms=received))
    return out


