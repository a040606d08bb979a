"""Unit tests: the spool holds webhook bodies as received; the forwarder builds the same records the
request path used to, and keeps what it cannot parse."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ingest.forwarder import expand_raw
from ingest.records import RecordBuilder, TypeCounts
from ingest.spool import frame
from schemas.body import check_body
from schemas.errors import BodyError
from schemas.parse import parse_body
from schemas.validate import validate_event

FIXTURES = Path(__file__).parent / "fixtures" / "events"
BODIES = sorted(p for p in FIXTURES.rglob("*.json"))


def _raw(body: bytes, ms: int) -> frame.SpoolRecord:
    data = frame.encode_raw(body, ms)
    rec, end = frame.decode_at(data, 0)
    assert end == len(data)
    return rec


@pytest.mark.parametrize("path", BODIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_raw_frame_expands_to_the_records_of_its_events(path: Path) -> None:
    body, ms = path.read_bytes(), 1_764_000_000_123
    builder = RecordBuilder("t", validate_event)
    raw = _raw(body, ms)
    assert raw.topic == frame.RAW_TOPIC and raw.value == body and raw.timestamp_ms == ms
    counts: TypeCounts = {}
    got = expand_raw([raw], builder, counts)
    envs = parse_body(body, received_at_ms=ms)
    want = [builder.record(env)[0] for env in envs]
    assert got == want, "the same topic, key, headers, timestamp and value as building on the request path"
    assert sum(n for n, _ in counts.values()) == len(envs)


def test_ready_records_pass_through_in_spool_order() -> None:
    builder = RecordBuilder("t", None)
    body = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V1","state":"online"}'
    (env,) = parse_body(body, received_at_ms=5)
    ready = frame.decode_at(frame.encode(*builder.record(env)[0]), 0)[0]  # spooled by an older receiver
    got = expand_raw([ready, _raw(body, 5), ready], builder, {})
    assert got == [ready, ready, ready]


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
