"""Envelope wire format: to_json / from_json / to_dict."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import orjson
import pytest

from schemas import SCHEMA_VERSION, Envelope, EnvelopeError, EventType, SourceFormat, parse_body
from schemas.envelope import WIRE_KEYS, new_envelope

BODY = b'{"createdAt":"2024-10-04T10:45:17.537Z","vin":"LRW3F7EK4NC700000","data":{"VehicleSpeed":34.797}}'


def env() -> Envelope:
    return parse_body(BODY, received_at_ms=1728038718000)[0]


def test_wire_keys_and_values() -> None:
    e = env()
    d = orjson.loads(e.to_json())
    assert (
        list(d)
        == list(WIRE_KEYS)
        == [
            "event_id",
            "type",
            "vin",
            "created_at",
            "created_at_ms",
            "received_at",
            "received_at_ms",
            "source_format",
            "schema_version",
            "payload",
        ]
    )
    assert d["type"] == "data" and d["source_format"] == "teslemetry"
    assert d["schema_version"] == SCHEMA_VERSION == 1
    assert d["created_at_ms"] == 1728038717537
    assert d["received_at"] == "2024-10-04T10:45:18.000Z"
    assert d["payload"] == orjson.loads(BODY)
    assert e.to_dict() == d


def test_roundtrip() -> None:
    e = env()
    back = Envelope.from_json(e.to_json())
    assert back == e
    assert type(back.type) is EventType and type(back.source_format) is SourceFormat


def test_roundtrip_every_type_none_vin() -> None:
    for body in (b'{"credits":{"cost":1}}', b'{"x":1}', b'{"id":5,"totals":{}}'):
        e = parse_body(body, received_at_ms=1)[0]
        assert Envelope.from_json(e.to_json()) == e


def test_frozen() -> None:
    e = env()
    with pytest.raises(FrozenInstanceError):
        e.vin = "x"  # type: ignore[misc]


def test_new_envelope_is_equivalent() -> None:
    args: tuple[Any, ...] = (
        "a" * 32,
        EventType.STATE,
        None,
        "c",
        1,
        "r",
        2,
        SourceFormat.SPLUNK,
        {"state": "x"},
    )
    assert new_envelope(*args) == Envelope(*args)


def good() -> dict[str, Any]:
    return env().to_dict()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("payload"), "missing payload"),
        (lambda d: d.pop("event_id"), "missing event_id"),
        (lambda d: d.update(schema_version=2), "newer than supported"),
        (lambda d: d.update(schema_version="1"), "bad schema_version"),
        (lambda d: d.update(schema_version=0), "bad schema_version"),
        (lambda d: d.update(event_id="xyz"), "bad event_id"),
        (lambda d: d.update(event_id="G" * 32), "bad event_id"),
        (lambda d: d.update(type="bogus"), "unknown type"),
        (lambda d: d.update(source_format="xml"), "unknown source_format"),
        (lambda d: d.update(vin=123), "vin must be"),
        (lambda d: d.update(created_at=5), "created_at must be a string"),
        (lambda d: d.update(received_at_ms="5"), "received_at_ms must be an integer"),
        (lambda d: d.update(created_at_ms=True), "created_at_ms must be an integer"),
        (lambda d: d.update(payload=[]), "payload must be an object"),
    ],
)
def test_from_json_rejects(mutate: Any, reason: str) -> None:
    d = good()
    mutate(d)
    with pytest.raises(EnvelopeError) as ei:
        Envelope.from_json(orjson.dumps(d))
    assert reason in ei.value.reason


@pytest.mark.parametrize("raw", [b"", b"garbage", b"[]", b"null", b'"s"', b"\xff"])
def test_from_json_garbage(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_json(raw)


def test_from_json_ignores_unknown_envelope_keys() -> None:
    d = good()
    d["future_key"] = 1  # additive change within schema_version 1
    assert Envelope.from_json(orjson.dumps(d)) == env()
