"""Unit tests: the spool holds webhook bodies as received; the forwarder builds the same records the
request path used to, and keeps what it cannot parse."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ingest.forward.forwarder import expand_raw
from ingest.records import RecordBuilder, TypeCounts
from ingest.spool import frame
from schemas.body import check_body
from schemas.errors import BodyError
from schemas.parse import parse_body
from schemas.validate import validate_event
from tests.support.paths import FIXTURES as FIXTURES_DIR

FIXTURES = FIXTURES_DIR
BODIES = sorted(p for p in FIXTURES.rglob("*.json"))


def _raw(body: bytes, ms: int) -> frame.SpooledBody:
    data = frame.encode(body, ms)
    rec, end = frame.decode_at(data, 0)
    assert end == len(data)
    return rec


@pytest.mark.parametrize("path", BODIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_raw_frame_expands_to_the_records_of_its_events(path: Path) -> None:
    body, ms = path.read_bytes(), 1_764_000_000_123
    builder = RecordBuilder("t", validate_event)
    raw = _raw(body, ms)
    assert raw.legacy_topic is None and raw.body == body and raw.received_at_ms == ms
    counts: TypeCounts = {}
    got = expand_raw([raw], builder, counts)
    envs = parse_body(body, received_at_ms=ms)
    want = [builder.record(env)[0] for env in envs]
    assert got == want, "the same topic, key, headers, timestamp and value as building on the request path"
    assert sum(n for n, _ in counts.values()) == len(envs)


def test_a_ready_record_spooled_by_an_older_receiver_is_dead_lettered_unchanged() -> None:
    """Frames written before the raw-body spool hold a ready Kafka record (topic, key, headers,
    value): an upgrade with such a spool keeps them, as dead letters naming their topic."""
    import struct
    import zlib

    builder = RecordBuilder("t", None)
    body = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V1","state":"online"}'
    (env,) = parse_body(body, received_at_ms=5)
    rec, _ = builder.record(env)
    topic, key, hdr = rec.topic.encode(), rec.key, b"\x08event_id\x20\x00" + env.event_id.encode()
    inner = struct.pack("<qqBHI", 5, rec.timestamp_ms, len(topic), len(key), len(hdr)) + topic + key + hdr + rec.value
    legacy = frame.decode_at(struct.pack("<4sII", frame.MAGIC, len(inner), zlib.crc32(inner)) + inner, 0)[0]
    assert legacy.legacy_topic == "t.state" and legacy.body == rec.value
    got = expand_raw([legacy, _raw(body, 5)], builder, {})
    assert [r.topic for r in got] == ["t.dlq", "t.state"]
    h = dict(got[0].headers)
    assert got[0].value == rec.value and h["dlq_error_type"] == b"LegacySpoolFrame"
    assert h["dlq_source_topic"] == b"t.state"


def test_unparseable_spooled_body_is_kept_as_a_dead_letter() -> None:
    builder = RecordBuilder("t", validate_event)
    counts: TypeCounts = {}
    (rec,) = expand_raw([_raw(b"[1, 2]", 7)], builder, counts)
    assert rec.topic == "t.dlq" and rec.value == b"[1, 2]" and rec.timestamp_ms == 7
    headers = dict(rec.headers)
    assert headers["dlq_error_type"] == b"BodyError" and b"array item 0" in headers["dlq_error"]
    assert counts == {"unparsed": [1, 1]}


@pytest.mark.parametrize(
    "bad",
    [b"{not json", b"", b"42", b'"a string"', b"[]", b"[1,2]", b'[{"vin":"V"}, 3]', b"null", b"\xff\xfe"],
)
def test_check_body_refuses_exactly_what_parse_body_refuses_with_the_same_reason(bad: bytes) -> None:
    with pytest.raises(BodyError) as parsed:
        parse_body(bad, received_at_ms=0)
    with pytest.raises(BodyError) as checked:
        check_body(bad)
    assert checked.value.reason == parsed.value.reason


@pytest.mark.parametrize("path", BODIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_check_body_accepts_every_fixture(path: Path) -> None:
    check_body(path.read_bytes())


def test_check_body_accepts_concatenated_hec_objects() -> None:
    one = {"time": 1735689600, "source": "V1", "event": {"data": {"Gear": "P"}}}
    two = {"time": 1735689601, "source": "V1", "event": {"data": {"Gear": "D"}}}
    body = orjson.dumps(one) + b"\n" + orjson.dumps(two)
    check_body(body)
    assert len(parse_body(body, received_at_ms=0)) == 2


# --- no single event stops the forwarder (issue 13) ------------------------------------------


def test_an_event_whose_record_cannot_be_built_is_dead_lettered_alone() -> None:
    """Parsed under looser limits than the receiver's (300 levels: the event id's orjson.dumps gives
    up at 255), the deep event is dead-lettered with the body and its index; its neighbours go on."""
    from schemas.body import BodyLimits

    good = {"vin": "V1", "createdAt": "2025-01-01T00:00:00Z", "state": "online"}
    deep = b'{"vin":"V2","createdAt":"2025-01-01T00:00:01Z","data":{"Deep":' + b"[" * 300 + b"]" * 300 + b"}}"
    body = b"[" + orjson.dumps(good) + b"," + deep + b"," + orjson.dumps(good | {"state": "asleep"}) + b"]"
    builder = RecordBuilder("t", validate_event, BodyLimits(max_depth=500))
    counts: TypeCounts = {}
    out = builder.expand(_raw(body, 9), counts)
    assert [r.topic for r in out] == ["t.state", "t.dlq", "t.state"]
    h = dict(out[1].headers)
    assert h["dlq_error_type"] == b"TypeError" and h["dlq_body_item"] == b"1" and out[1].value == body
    assert b"event 1 of the body could not be built" in h["dlq_error"]
    assert counts["unbuildable"] == [1, 1] and builder.tally["dlq:event_unbuildable"] == 1


def test_an_exception_from_one_events_validation_does_not_take_its_neighbours() -> None:
    def validator(env: object) -> list[str]:
        if getattr(env, "vin", None) == "BAD":
            raise RuntimeError("validator bug")
        return []

    body = orjson.dumps([{"vin": "V1", "state": "online"}, {"vin": "BAD", "state": "online"}, {"vin": "V3", "state": "x"}])
    out = RecordBuilder("t", validator).expand(_raw(body, 9), {})  # type: ignore[arg-type]
    assert [r.topic for r in out] == ["t.state", "t.dlq", "t.state"]
    assert orjson.loads(out[1].value) == {"vin": "BAD", "state": "online"}, "the event alone, as sent"
    assert dict(out[1].headers)["dlq_error_type"] == b"RuntimeError"


def test_an_event_its_topic_would_refuse_for_its_time_gets_its_receive_time() -> None:
    from ingest.forward.topic_rules import TimestampBounds, TopicRule

    builder = RecordBuilder("t", None)
    builder.rules = {"t.data": TopicRule(TimestampBounds(after_max_ms=3_600_000))}
    now = 1_764_000_000_000
    future = {"vin": "V", "createdAt": "2026-01-01T00:00:00Z", "data": {"A": 1}}  # ~38 days after `now`
    ok = {"vin": "V", "createdAt": "2025-11-24T16:00:00Z", "data": {"A": 2}}
    (env_f,) = parse_body(orjson.dumps(future), received_at_ms=now)
    (env_ok,) = parse_body(orjson.dumps(ok), received_at_ms=now)
    rec_f, _ = builder.record(env_f, now_ms=now)
    rec_ok, _ = builder.record(env_ok, now_ms=now)
    assert rec_f.timestamp_ms == now and ("timestamp_source", b"received_at") in rec_f.headers
    assert rec_ok.timestamp_ms == env_ok.created_at_ms and all(h[0] != "timestamp_source" for h in rec_ok.headers)
    assert builder.tally["timestamp_replaced"] == 1


def test_timestamp_bounds_keep_a_margin_and_log_append_time_refuses_nothing() -> None:
    from ingest.forward.topic_rules import ANY_TIME, TimestampBounds, bounds_from_configs

    b = TimestampBounds(after_max_ms=3_600_000, before_max_ms=86_400_000)
    now = 10**12
    assert not b.refuses(now + 3_500_000, now) and b.refuses(now + 3_590_000, now)  # one minute of margin
    assert not b.refuses(now - 86_000_000, now) and b.refuses(now - 86_390_000, now)
    assert bounds_from_configs({"message.timestamp.type": "LogAppendTime",
                                "message.timestamp.after.max.ms": "1"}) == ANY_TIME
    assert bounds_from_configs({"message.timestamp.after.max.ms": str(2**63 - 1)}) == ANY_TIME


def test_kafka_refusals_are_classified_as_the_records_or_the_clusters() -> None:
    from aiokafka import errors as ke

    from ingest.errors import NotSubmittedError
    from ingest.forward.refusals import Disposition, classify

    assert classify(ke.InvalidTimestampError()) is Disposition.TIMESTAMP
    assert classify(ke.MessageSizeTooLargeError()) is Disposition.RECORD
    assert classify(ke.RecordTooLargeError()) is Disposition.RECORD
    assert classify(ke.OutOfOrderSequenceNumber()) is Disposition.PRODUCER
    assert classify(NotSubmittedError()) is Disposition.PRODUCER
    for cluster in (ke.NotEnoughReplicasError(), ke.TopicAuthorizationFailedError(), ke.KafkaTimeoutError(),
                    ke.KafkaConnectionError(), ke.UnknownError(), ke.PolicyViolationError(), RuntimeError()):
        assert classify(cluster) is Disposition.RETRY, cluster


@pytest.mark.parametrize(
    ("body", "cls", "reason"),
    [
        (b"[{\"a\":" + b"[" * 70 + b"]" * 70 + b"}]", "BodyError", "nesting deeper than 64 levels"),
        (b'{"a":' * 70 + b"1" + b"}" * 70, "BodyError", "nesting deeper than 64 levels"),
        (b"[" * 1500 + b"]" * 1500, "BodyError", "nesting deeper than 64 levels"),  # past orjson's own limit
        (b'{"a":' * 1500 + b"1" + b"}" * 1500 + b"{}", "BodyError", "nesting deeper than 64 levels"),  # stdlib path
        (b"[" + b",".join([b"{}"] * 1001) + b"]", "BodyTooLargeError", "1001 events in one body"),
        (b"{}" * 1001, "BodyTooLargeError", "more than 1000 concatenated JSON documents"),
    ],
)
def test_the_limits_are_one_rule_for_the_request_check_and_the_parser(body: bytes, cls: str, reason: str) -> None:
    with pytest.raises(BodyError) as checked:
        check_body(body)
    with pytest.raises(BodyError) as parsed:
        parse_body(body, received_at_ms=0)
    assert type(checked.value).__name__ == type(parsed.value).__name__ == cls
    assert reason in checked.value.reason and checked.value.reason == parsed.value.reason


def test_bodies_at_the_limits_are_accepted() -> None:
    deep = b'{"vin":"V","data":{"A":' + b"[" * 61 + b"]" * 61 + b"}}"  # 64 levels: object, data, 61 arrays... + 1
    check_body(deep)
    check_body(b"[" + b",".join([b'{"vin":"V"}'] * 1000) + b"]")
    check_body(b'{"vin":"V"}' * 1000)
