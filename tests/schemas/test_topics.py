"""Topic names, keys, headers."""

from __future__ import annotations

from schemas import (
    EventType,
    all_event_topics,
    all_topics,
    dlq_topic,
    headers_for,
    key_for,
    notifications_topic,
    parse_body,
    topic_for,
)


def test_topic_names() -> None:
    assert topic_for(EventType.DATA, "teslemetry") == "teslemetry.data"
    assert topic_for("wall_connector_totals", "p") == "p.wall_connector_totals"
    assert dlq_topic("p") == "p.dlq"
    assert notifications_topic("p") == "p.notifications"
    topics = all_event_topics("p")
    assert len(topics) == len(EventType) == 14
    assert topics[0] == "p.data" and "p.unknown" in topics
    assert all_topics("p") == [*topics, "p.dlq", "p.notifications"]


def one(body: bytes):  # type: ignore[no-untyped-def]
    return parse_body(body, received_at_ms=1728038718000)[0]


def test_keys() -> None:
    assert key_for(one(b'{"vin":"V1","state":"online"}')) == b"V1"
    assert key_for(one(b'{"site_id":12345,"live_status":{}}')) == b"12345"
    assert key_for(one(b'{"id":"77","totals":{"x":1}}')) == b"77"
    assert key_for(one(b'{"credits":{"cost":1}}')) == b"account"
    assert key_for(one(b'{"credits":{"cost":1},"vin":"V2"}')) == b"V2"
    assert key_for(one(b'{"foo":1}')) == b"unknown"
    assert key_for(one(b'{"state":"online"}')) == b"unknown"


def test_headers() -> None:
    e = one(b'{"vin":"V1","createdAt":"2024-10-04T10:45:17.537123Z","state":"online"}')
    h = headers_for(e)
    assert [k for k, _ in h] == [
        "event_type",
        "event_id",
        "vin",
        "created_at",
        "received_at",
        "source_format",
        "schema_version",
    ]
    d = dict(h)
    assert d["event_type"] == b"state"
    assert d["event_id"] == e.event_id.encode()
    assert d["vin"] == b"V1"
    assert d["created_at"] == b"2024-10-04T10:45:17.537123Z"
    assert d["received_at"] == b"2024-10-04T10:45:18.000Z"
    assert d["source_format"] == b"teslemetry"
    assert d["schema_version"] == b"1"
    assert dict(headers_for(one(b'{"credits":{}}')))["vin"] == b""
