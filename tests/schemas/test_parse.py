"""parse_body: Teslemetry-format events, type detection, normalisation, event ids, timestamps, bad bodies.
(Tesla raw and Splunk HEC bodies: ``test_parse_raw_and_splunk.py``.)"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas import BodyError, EventType, SourceFormat, parse_body, parse_object
from schemas.times import iso_to_ms
from tests.support.bodies import RX, RX_ISO, VIN, load, one
from tests.support.paths import FIXTURES as FIX

# --- every fixture: type, id, format, timestamps -----------------------------------------

# (fixture, type, vin, source_format, created_at)
CASES = [
    ("teslemetry/data.json", "data", VIN, "teslemetry", "2024-10-04T10:45:17.537Z"),
    ("teslemetry/state.json", "state", VIN, "teslemetry", "2024-10-04T10:45:17.537Z"),
    ("teslemetry/vehicle_data.json", "vehicle_data", VIN, "teslemetry", "2025-02-03T08:15:02.114Z"),
    ("teslemetry/alerts.json", "alerts", VIN, "teslemetry", "2025-03-11T21:04:10.201Z"),
    ("teslemetry/errors.json", "errors", VIN, "teslemetry", "2025-03-11T21:04:10.201Z"),
    ("teslemetry/connectivity.json", "connectivity", VIN, "teslemetry", "2024-10-04T10:45:17.537Z"),
    ("teslemetry/config.json", "config", VIN, "teslemetry", "2025-07-26T03:12:00.000Z"),
    ("teslemetry/credits.json", "credits", None, "teslemetry", "2025-02-03T08:15:02.114Z"),
    ("teslemetry/live_status.json", "live_status", "12345", "teslemetry", "2026-07-28T10:16:00.000Z"),
    ("teslemetry/site_info.json", "site_info", "12345", "teslemetry", "2026-07-28T10:16:00.000Z"),
    (
        "teslemetry/tariff_content_v2.json",
        "tariff_content_v2",
        "12345",
        "teslemetry",
        "2026-07-28T10:16:00.000Z",
    ),
    ("teslemetry/energy_totals.json", "energy_totals", "12345", "teslemetry", "2026-07-28T10:16:00.000Z"),
    (
        "teslemetry/wall_connector_totals.json",
        "wall_connector_totals",
        "12345",
        "teslemetry",
        "2026-07-28T10:16:00.000Z",
    ),
    ("teslemetry/unknown.json", "unknown", VIN, "teslemetry", "2026-07-28T10:16:00.000Z"),
    ("tesla_raw/data.json", "data", VIN, "tesla_raw", "2025-05-02T07:31:12.402918311Z"),
    # FT's alert/error protojson has the Teslemetry shape: nothing tells them apart.
    ("tesla_raw/alerts.json", "alerts", VIN, "teslemetry", "2025-03-11T21:04:10.201518Z"),
    ("tesla_raw/errors.json", "errors", VIN, "teslemetry", "2025-03-11T21:04:10.201518Z"),
    ("tesla_raw/connectivity.json", "connectivity", VIN, "tesla_raw", "2025-03-11T21:04:10.201518311Z"),
    ("splunk/data.json", "data", VIN, "splunk", "2025-05-02T07:31:12.402Z"),
    ("splunk/data_raw.json", "data", VIN, "splunk", "2025-05-02T07:31:12.402918311Z"),
    ("splunk/alerts.json", "alerts", VIN, "splunk", "2025-05-02T07:31:12.402Z"),
    ("splunk/errors.json", "errors", VIN, "splunk", "2025-05-02T07:31:12.402Z"),
    ("splunk/connectivity.json", "connectivity", VIN, "splunk", "2025-05-02T07:31:12.402Z"),
    ("bench/data_0.5kb.json", "data", VIN, "teslemetry", "2025-05-02T07:31:12.402918311Z"),
    ("bench/data_1.5kb.json", "data", VIN, "teslemetry", "2025-05-02T07:31:12.402918311Z"),
    ("bench/data_3kb.json", "data", VIN, "teslemetry", "2025-05-02T07:31:12.402918311Z"),
]


@pytest.mark.parametrize(("fixture", "etype", "vin", "fmt", "created_at"), CASES, ids=[c[0] for c in CASES])
def test_fixture(fixture: str, etype: str, vin: str | None, fmt: str, created_at: str) -> None:
    env = one(load(fixture))
    assert env.type == etype and type(env.type) is EventType
    assert env.vin == vin
    assert env.source_format == fmt and type(env.source_format) is SourceFormat
    assert env.created_at == created_at
    assert isinstance(env.created_at_ms, int)
    assert env.received_at == RX_ISO and env.received_at_ms == RX
    assert len(env.event_id) == 32 and int(env.event_id, 16) >= 0
    assert isinstance(env.payload, dict)
    # same body again -> same id; a later receive time does not change it
    assert one(load(fixture), rx=RX + 5000).event_id == env.event_id


def test_every_type_has_a_teslemetry_fixture() -> None:
    have = {p.stem for p in (FIX / "teslemetry").glob("*.json")}
    assert have == {t.value for t in EventType}
    for fmt in ("tesla_raw", "splunk"):
        assert {"data", "alerts", "errors", "connectivity"} <= {p.stem for p in (FIX / fmt).glob("*.json")}


def test_bench_fixture_sizes() -> None:
    sizes = {p.stem: len(p.read_bytes()) for p in (FIX / "bench").glob("*.json")}
    assert 400 <= sizes["data_0.5kb"] <= 600
    assert 1300 <= sizes["data_1.5kb"] <= 1700
    assert 2700 <= sizes["data_3kb"] <= 3300


# --- Teslemetry format ------------------------------------------------------------------


def test_teslemetry_payload_is_the_event_unchanged() -> None:
    body = load("teslemetry/data.json")
    env = one(body)
    assert env.payload == orjson.loads(body)
    assert env.created_at_ms == 1728038717537
    assert env.payload["data"]["MinutesToArrival"] is None
    assert env.payload["data"]["Location"] == {"latitude": 30.2226645, "longitude": -97.6213806}


def test_string_typed_values_are_kept_as_sent() -> None:
    env = one({"createdAt": "2024-10-04T10:45:17.537Z", "vin": VIN, "data": {"VehicleSpeed": "34.797"}})
    assert env.payload["data"] == {"VehicleSpeed": "34.797"}


def test_unknown_keys_are_kept() -> None:
    env = one({"createdAt": "2024-10-04T10:45:17Z", "vin": VIN, "state": "driving", "isCache": True, "x": 1})
    assert env.type is EventType.STATE
    assert env.payload == {
        "createdAt": "2024-10-04T10:45:17Z",
        "vin": VIN,
        "state": "driving",
        "isCache": True,
        "x": 1,
    }


def test_credits_with_vin_and_snapshot() -> None:
    env = one(
        {
            "credits": {"type": "snapshot", "cost": 0, "name": "snapshot", "balance": 5, "quota": {}},
            "createdAt": "2026-07-28T10:16:00.000Z",
            "isCache": True,
        }
    )
    assert env.type is EventType.CREDITS and env.vin is None
    assert one({"credits": {"cost": 1}, "vin": VIN, "createdAt": "2026-07-28T10:16:00Z"}).vin == VIN


def test_tariff_null_is_a_tariff_event() -> None:
    env = one({"createdAt": "2026-07-28T10:16:00.000Z", "site_id": "12345", "tariff_content_v2": None})
    assert env.type is EventType.TARIFF_CONTENT_V2
    assert env.payload["tariff_content_v2"] is None


def test_numeric_site_ids() -> None:
    assert one({"createdAt": "2026-07-28T10:16:00Z", "site_id": 12345, "live_status": {}}).vin == "12345"
    assert one({"createdAt": "2026-07-28T10:16:00Z", "site_id": 12345.0, "site_info": {}}).vin == "12345"
    env = one({"id": 987654321012, "totals": {"total_home_usage": 1.0}})
    assert env.type is EventType.ENERGY_TOTALS and env.vin == "987654321012"
    assert env.payload["id"] == 987654321012  # payload keeps the number


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        ({"solar_energy_exported": 1.0, "total_home_usage": None}, EventType.ENERGY_TOTALS),
        ({"total_home_usage": None}, EventType.ENERGY_TOTALS),
        ({"1529455-02-D--PGT23123456789": 10342.0}, EventType.WALL_CONNECTOR_TOTALS),
        ({}, EventType.WALL_CONNECTOR_TOTALS),  # like PYS 1.3.0 is_energy_totals: no history name
    ],
)
def test_energy_vs_wall_connector_totals(totals: dict[str, Any], expected: EventType) -> None:
    assert (
        one({"id": "1", "date": "2026-07-28", "createdAt": "2026-07-28T10:16:00Z", "totals": totals}).type
        is expected
    )


def test_connectivity_any_case() -> None:
    env = one(
        {"createdAt": "2024-10-04T10:45:17Z", "vin": VIN, "networkInterface": "WiFi", "status": "connected"}
    )
    assert env.type is EventType.CONNECTIVITY


# --- unknown ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "vin"),
    [
        ({}, None),
        ({"foo": 1}, None),
        ({"vin": VIN, "metrics": []}, VIN),
        ({"site_id": 77, "whatever": {}}, "77"),
        ({"id": "abc", "date": "2026-01-01"}, "abc"),
        ({"vin": VIN, "data": "not an object"}, VIN),  # data must be an object (or a raw array)
        ({"vin": VIN, "data": None}, VIN),
        ({"id": 1, "totals": None}, "1"),
        ({"vin": VIN, "data": [1, 2]}, VIN),  # raw array without datums
        ({"vin": VIN, "data": [{"value": {"doubleValue": 1}}]}, VIN),  # datum without key
    ],
)
def test_unrecognised_is_unknown_never_an_error(obj: dict[str, Any], vin: str | None) -> None:
    env = one(obj)
    assert env.type is EventType.UNKNOWN
    assert env.vin == vin
    assert env.payload == obj
    assert env.created_at == RX_ISO and env.created_at_ms == RX


# --- multi-key objects, arrays -----------------------------------------------------------


def test_multi_key_object_is_split_one_envelope_per_key() -> None:
    obj = {
        "vin": VIN,
        "createdAt": "2024-10-04T10:45:17.537Z",
        "isCache": True,
        "data": {"BatteryLevel": 80},
        "credits": {"type": "wake_up", "cost": 20, "name": "wake_up", "balance": 1980},
        "networkInterface": "wifi",
        "status": "CONNECTED",
    }
    envs = parse_body(orjson.dumps(obj), received_at_ms=RX)
    assert [e.type for e in envs] == [EventType.DATA, EventType.CONNECTIVITY, EventType.CREDITS]
    data, conn, credits = envs
    assert data.payload == {
        "vin": VIN,
        "createdAt": "2024-10-04T10:45:17.537Z",
        "isCache": True,
        "data": {"BatteryLevel": 80},
    }
    assert conn.payload == {
        "vin": VIN,
        "createdAt": "2024-10-04T10:45:17.537Z",
        "isCache": True,
        "networkInterface": "wifi",
        "status": "CONNECTED",
    }
    assert set(credits.payload) == {"vin", "createdAt", "isCache", "credits"}
    assert all(e.vin == VIN for e in envs)
    assert len({e.event_id for e in envs}) == 3


def test_array_of_events_in_order() -> None:
    items = [orjson.loads(load(f"teslemetry/{t}.json")) for t in ("data", "state", "credits", "live_status")]
    envs = parse_body(orjson.dumps(items), received_at_ms=RX)
    assert [e.type.value for e in envs] == ["data", "state", "credits", "live_status"]
    assert all(e.received_at_ms == RX for e in envs)


def test_array_mixing_formats() -> None:
    items = [
        orjson.loads(load(f)) for f in ("tesla_raw/data.json", "splunk/data.json", "teslemetry/data.json")
    ]
    envs = parse_body(orjson.dumps(items), received_at_ms=RX)
    assert [e.source_format.value for e in envs] == ["tesla_raw", "splunk", "teslemetry"]


def test_identical_events_in_one_body_are_returned_once_in_first_occurrence_order() -> None:
    ev = orjson.loads(load("teslemetry/state.json"))
    other = {**ev, "state": "online" if ev["state"] != "online" else "asleep"}
    envs = parse_body(orjson.dumps([ev, other, ev, {**ev}, other]), received_at_ms=RX)
    assert [e.payload["state"] for e in envs] == [ev["state"], other["state"]]
    assert len({e.event_id for e in envs}) == 2
    # also across concatenated documents (Splunk HEC batching)
    body = orjson.dumps(ev) + b"\n" + orjson.dumps(ev) + b"\n" + orjson.dumps(other)
    assert [e.payload["state"] for e in parse_body(body, received_at_ms=RX)] == [ev["state"], other["state"]]


# --- event ids ---------------------------------------------------------------------------


def test_event_id_ignores_key_order_and_whitespace() -> None:
    a = one(b'{"vin": "V", "createdAt": "2024-10-04T10:45:17Z", "data": {"A": 1, "B": 2}}')
    b = one(b'{"data":{"B":2,"A":1},"createdAt":"2024-10-04T10:45:17Z","vin":"V"}')
    assert a.event_id == b.event_id


@pytest.mark.parametrize(
    "change",
    [
        {"vin": "OTHERVIN000000000"},
        {"createdAt": "2024-10-04T10:45:17.538Z"},
        {"data": {"BatteryLevel": 80.1}},
        {"data": {"BatteryLevel": "80"}},
        {"isCache": True},
    ],
)
def test_different_content_gives_a_different_id(change: dict[str, Any]) -> None:
    base = {"vin": VIN, "createdAt": "2024-10-04T10:45:17.537Z", "data": {"BatteryLevel": 80}}
    assert one(base).event_id != one({**base, **change}).event_id


def test_same_payload_different_type_different_id() -> None:
    # an object split in two: each envelope has its own id even though both derive from one object
    envs = parse_body(
        b'{"vin":"V","createdAt":"2024-10-04T10:45:17Z","state":"online","data":{}}', received_at_ms=RX
    )
    assert envs[0].event_id != envs[1].event_id


# --- timestamps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "ms"),
    [
        ("2024-02-24T04:58:44.983607402Z", 1708750724983),  # nanoseconds (DOC-TEL example)
        ("2024-02-24T04:58:44.983607Z", 1708750724983),
        ("2024-02-24T04:58:44.98Z", 1708750724980),
        ("2024-02-24T04:58:44.9Z", 1708750724900),
        ("2024-02-24T04:58:44Z", 1708750724000),
        ("2024-02-24T04:58:44.999999999Z", 1708750724999),  # truncated, never rounded up
        ("2024-02-24T05:58:44.983+01:00", 1708750724983),
        ("2024-02-23T23:58:44.983607402-05:00", 1708750724983),
        ("2024-02-24T04:58:44.983", 1708750724983),  # no zone: UTC
        ("2024-02-24 04:58:44.983Z", 1708750724983),
        (1708750724, 1708750724000),  # epoch seconds
        (1708750724.983607, 1708750724983),
        (1708750724983, 1708750724983),  # epoch ms
        (1708750724983607, 1708750724983),  # epoch µs
        (1708750724983607402, 1708750724983),  # epoch ns
        ("1708750724.983", 1708750724983),  # numeric string
    ],
)
def test_created_at_forms(created: Any, ms: int) -> None:
    env = one({"vin": VIN, "createdAt": created, "state": "online"})
    assert env.created_at_ms == ms
    assert env.created_at == (created if isinstance(created, str) else repr(created))


def test_iso_parser_matches_reference() -> None:
    from datetime import datetime

    for s in (
        "2025-12-31T23:59:59.999Z",
        "2000-02-29T12:00:00Z",
        "1970-01-01T00:00:00Z",
        "2038-01-19T03:14:08.5Z",
    ):
        ref = int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)
        assert iso_to_ms(s) == ref


@pytest.mark.parametrize("created", [None, "yesterday", "", True, {"a": 1}, 1e30])
def test_missing_or_bad_created_at_uses_received_time(created: Any) -> None:
    obj: dict[str, Any] = {"vin": VIN, "state": "online"}
    if created is not None:
        obj["createdAt"] = created
    env = one(obj)
    assert env.created_at_ms == RX
    assert env.payload == obj  # nothing added, nothing lost
    if created is None:
        assert env.created_at == RX_ISO
    else:
        assert env.created_at == (created if isinstance(created, str) else orjson.dumps(created).decode())


def test_received_at_rendering() -> None:
    assert one({"state": "online"}, rx=0).received_at == "1970-01-01T00:00:00.000Z"
    assert one({"state": "online"}, rx=1728038717007).received_at == "2024-10-04T10:45:17.007Z"
    assert one({"state": "online"}, rx=1728038717999).received_at == "2024-10-04T10:45:17.999Z"


# --- bad bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"not json", "invalid JSON"),
        (b'{"a": NaN}', "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b'{"a":1} trailing', "invalid JSON"),
        (b"[]", "empty array"),
        (b"42", "got number"),
        (b'"x"', "got string"),
        (b"null", "got null"),
        (b"true", "got boolean"),
        (b'[{"state":"online"}, 3]', "array item 1 must be an object, got number"),
        (b"[[]]", "array item 0 must be an object, got array"),
        (b'{"a":1}\n[1]', "array item 1 must be an object, got array"),
    ],
)
def test_bad_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(BodyError) as ei:
        parse_body(body, received_at_ms=RX)
    assert reason in ei.value.reason
    assert isinstance(ei.value, ValueError)


def test_parse_object_and_str_body() -> None:
    obj = orjson.loads(load("teslemetry/state.json"))
    env = parse_object(obj, received_at_ms=RX)[0]
    assert env == one(load("teslemetry/state.json").decode())


def test_ms_to_iso_matches_datetime() -> None:
    import random
    from datetime import UTC, datetime, timedelta

    from schemas.times import MAX_MS, MIN_MS, ms_to_iso

    rnd = random.Random(3)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    samples = [MIN_MS, MAX_MS, -1, 0, 999, 1000] + [rnd.randint(0, 4_000_000_000_000) for _ in range(500)]
    samples += [1746171072000 + i for i in range(0, 3000, 7)]  # many within the same seconds (cached)
    for ms in samples:
        dt = epoch + timedelta(milliseconds=ms)
        assert ms_to_iso(ms) == dt.isoformat(timespec="milliseconds").replace("+00:00", "Z"), ms
