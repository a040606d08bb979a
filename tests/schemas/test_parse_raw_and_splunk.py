"""parse_body on Tesla's raw format (``data: [{key, value}]`` datums) and Splunk HEC events (flat,
wrapping a Teslemetry or raw event, batched): the same envelopes, and the same event ids, as the
Teslemetry form of the same record."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import EventType, SourceFormat, parse_body
from tests.support.bodies import RX, VIN, load, one

# --- Tesla raw format --------------------------------------------------------------------


def test_raw_datums_become_plain_values() -> None:
    env = one(load("tesla_raw/data.json"))
    assert env.type is EventType.DATA and env.source_format is SourceFormat.TESLA_RAW
    assert env.payload["data"] == {
        "Location": {"latitude": 52.0907, "longitude": 5.1214},
        "VehicleSpeed": 48.2,
        "Gear": "ShiftStateD",
        "BatteryLevel": "78.4",  # stringValue stays a string, like Teslemetry's untyped rendering
        "Odometer": 10423.612,
        "RouteLastUpdated": 1746171060,  # longValue "..." -> int
        "ChargerPhases": 3,
        "Locked": True,
        "DoorState": {
            "DriverFront": False,
            "DriverRear": False,
            "PassengerFront": False,
            "PassengerRear": False,
            "TrunkFront": False,
            "TrunkRear": True,
        },
        "DetailedChargeState": "DetailedChargeStateDisconnected",
        "ScheduledDepartureTime": "07:30:00",
        "MinutesToArrival": None,  # invalid: true
    }
    assert env.payload["isResend"] is False
    assert list(env.payload) == ["data", "createdAt", "vin", "isResend"]
    assert env.created_at_ms == 1746171072402


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"stringValue": "34.797"}, "34.797"),
        ({"longValue": "9007199254740993"}, 9007199254740993),
        ({"longValue": "99999999999999999999999"}, "99999999999999999999999"),  # > 64 bits: kept
        ({"intValue": 7}, 7),
        ({"doubleValue": "1.5"}, 1.5),
        ({"doubleValue": "NaN"}, "NaN"),
        ({"floatValue": 2}, 2),
        ({"booleanValue": "true"}, True),
        ({"invalid": True}, None),
        ({"invalid": False, "doubleValue": 3.5}, 3.5),
        ({}, None),
        (None, None),
        ({"timeValue": {"hour": 23}}, "23:00:00"),
        ({"locationValue": {"latitude": 1.5, "longitude": -2.5}}, {"latitude": 1.5, "longitude": -2.5}),
        ({"shiftStateValue": "ShiftStateR"}, "ShiftStateR"),
        ({"tireLocationValue": {"frontLeft": True}}, {"frontLeft": True}),
        ({"someFutureValue": [1]}, [1]),
        ({"a": 1, "b": 2}, {"a": 1, "b": 2}),  # not a oneof: kept as is
        ("bare", "bare"),
    ],
)
def test_raw_value_forms(value: Any, plain: Any) -> None:
    env = one({"vin": VIN, "createdAt": "2025-05-02T07:31:12Z", "data": [{"key": "F", "value": value}]})
    assert env.type is EventType.DATA
    assert env.payload["data"] == {"F": plain}


def test_raw_and_teslemetry_of_the_same_record_share_an_id() -> None:
    raw = {
        "data": [
            {"key": "VehicleSpeed", "value": {"doubleValue": 48.2}},
            {"key": "Gear", "value": {"shiftStateValue": "ShiftStateD"}},
        ],
        "createdAt": "2025-05-02T07:31:12.402918311Z",
        "vin": VIN,
    }
    tes = {"data": {"VehicleSpeed": 48.2, "Gear": "ShiftStateD"}, "createdAt": raw["createdAt"], "vin": VIN}
    a, b = one(raw), one(tes)
    assert a.source_format is SourceFormat.TESLA_RAW and b.source_format is SourceFormat.TESLEMETRY
    assert a.event_id == b.event_id


# --- Splunk HEC --------------------------------------------------------------------------


def test_splunk_flat_event() -> None:
    env = one(load("splunk/data.json"))
    # HEC's epoch ``time`` becomes the payload's createdAt and the envelope's created_at alike
    assert env.created_at == "2025-05-02T07:31:12.402Z" and env.created_at_ms == 1746171072402
    assert env.payload == {
        "createdAt": "2025-05-02T07:31:12.402Z",
        "vin": VIN,
        "data": {
            "Location": {"latitude": 52.0907, "longitude": 5.1214},
            "VehicleSpeed": 48.2,
            "Gear": "ShiftStateD",
        },
        "hec": {"time": 1746171072.4029183, "host": "eu.teslemetry.com", "source": VIN},
    }


def test_splunk_wrapping_a_raw_event() -> None:
    env = one(load("splunk/data_raw.json"))
    assert env.payload["data"] == {"VehicleSpeed": "48.2", "Gear": "ShiftStateD"}
    assert env.source_format is SourceFormat.SPLUNK
    assert env.created_at_ms == 1746171072402


def test_splunk_wrapped_event_without_vin_or_created_at_gets_them_from_hec() -> None:
    env = one(load("splunk/connectivity.json"))
    assert env.payload["vin"] == VIN and env.payload["createdAt"] == "2025-05-02T07:31:12.402Z"
    assert env.payload["hec"]["host"] == "eu.teslemetry.com"


def test_splunk_batch_newline_separated() -> None:
    envs = parse_body(load("splunk/batch.ndjson"), received_at_ms=RX)
    assert [e.payload["data"]["VehicleSpeed"] for e in envs] == [48.2, 51.0, 0.0]
    assert [e.created_at_ms for e in envs] == [1746171072400, 1746171073400, 1746171074400]
    assert all(e.source_format is SourceFormat.SPLUNK for e in envs)


def test_concatenated_objects_without_newlines() -> None:
    envs = parse_body(b'{"vin":"A","state":"online"}{"vin":"B","state":"asleep"} ', received_at_ms=RX)
    assert [e.vin for e in envs] == ["A", "B"]


def test_splunk_time_in_ms_and_string_event() -> None:
    env = one({"time": 1746171072402, "source": VIN, "event": {"VehicleSpeed": 1}})
    assert env.created_at_ms == 1746171072402 and env.created_at == "2025-05-02T07:31:12.402Z"
    env = one({"time": 1746171072, "host": "h", "source": VIN, "event": "free text"})
    assert env.type is EventType.UNKNOWN and env.source_format is SourceFormat.SPLUNK and env.vin == VIN


def test_splunk_without_time_uses_received_time() -> None:
    env = one({"source": VIN, "host": "h", "event": {"VehicleSpeed": 1}})
    assert env.created_at_ms == RX and "createdAt" not in env.payload


def test_splunk_payload_reposted_in_teslemetry_form_keeps_its_event_id() -> None:
    """Replay re-POSTs the envelope's payload; the receiver must compute the same event_id."""
    for name in ("splunk/data.json", "splunk/connectivity.json", "splunk/alerts.json", "splunk/data_raw.json"):
        for env in parse_body(load(name), received_at_ms=RX):
            again = one(env.payload)
            assert again.event_id == env.event_id, name
            assert again.created_at_ms == env.created_at_ms
