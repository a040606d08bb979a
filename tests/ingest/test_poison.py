"""No single event can stop the pipeline (issue 13): each poison against a real broker and a real
``tpipe serve`` process. For each: the poison is kept exactly once (its topic or the DLQ, with a
reason), a normal event posted right after it reaches Kafka within seconds, and no record is
published twice because of it.

Run with ``-s`` to see the figures each test prints (status, where the poison went, how long the
next event took).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from plumbing.kafka_clients import ensure_topics
from schemas.dlq import DLQ_ERROR, DLQ_ERROR_TYPE, DLQ_SOURCE_TOPIC
from schemas.envelope import Envelope
from tests.support.events import iso
from tests.support.kafka_broker import (
    TopicTail,
    alter_topic,
    broker_settings,
    create_topic,
    read_all,
    read_until_quiet,
)
from tests.support.processes import TOKEN, ReceiverProcess, new_receiver

pytestmark = [pytest.mark.kafka]

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _event(vin: str, seq: int, *, created: datetime | None = None, **data: object) -> dict[str, object]:
    created = created or datetime(2025, 6, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=seq)
    return {"createdAt": iso(created), "vin": vin, "data": {"Seq": seq, **data}}


def _post(rx: ReceiverProcess, body: bytes | object) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(rx.url + "/webhook", content=content, headers=AUTH, timeout=30)


async def _next_event_s(rx: ReceiverProcess, settings: object, topic: str, vin: str, seq: int) -> float:
    """Post a normal event and return the seconds until it is in ``topic`` (a consumer waits at the
    topic's end before the post; the topic is created as tpipe would, if nothing created it yet)."""
    await ensure_topics(settings, [topic])  # type: ignore[arg-type]
    async with TopicTail(settings, topic) as tail:  # type: ignore[arg-type]
        tail.start()
        assert _post(rx, _event(vin, seq)).status_code == 202
        _, took = await tail.first(lambda r: Envelope.from_json(r.value).payload["data"]["Seq"] == seq)
    return took


def _figures(name: str, **fig: object) -> None:
    print(f"\nPOISON FIGURES {name}: {json.dumps(fig)}")


async def test_car_clock_two_hours_ahead_lands_in_its_topic_with_its_own_time(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """Topics tpipe creates accept any event time: the record keeps the car's clock."""
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    try:
        ahead = datetime.now(UTC) + timedelta(hours=2)
        r = _post(rx, _event("VFUTURE0000000001", 1, created=ahead))
        assert r.status_code == 202
        took = await _next_event_s(rx, settings, f"{topic_prefix}.data", "VFUTURE0000000001", 2)
        recs = await read_until_quiet(settings, f"{topic_prefix}.data", min_count=2)
        assert len(recs) == 2, "each event exactly once"
        future = next(r for r in recs if Envelope.from_json(r.value).payload["data"]["Seq"] == 1)
        assert future.timestamp == Envelope.from_json(future.value).created_at_ms
        assert "timestamp_source" not in dict(future.headers)
        _figures("clock_ahead_tpipe_topic", status=r.status_code, ended_in=f"{topic_prefix}.data",
                 record_timestamp="created_at", next_event_s=took)
    finally:
        rx.terminate()


async def test_topic_that_refuses_future_times_gets_the_receive_time_and_a_header(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """A data topic created by an operator with Kafka 4's default bound (1 h): the forwarder knows the
    bound and stamps the event with its receive time before Kafka can refuse it."""
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.data"
    await create_topic(settings, topic, {"message.timestamp.after.max.ms": "3600000"})
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    try:
        ahead = datetime.now(UTC) + timedelta(hours=3)
        body = [_event("VFUTURE0000000002", 1), _event("VFUTURE0000000002", 2, created=ahead),
                _event("VFUTURE0000000002", 3)]
        r = _post(rx, body)
        assert r.status_code == 202
        took = await _next_event_s(rx, settings, topic, "VFUTURE0000000002", 4)
        recs = await read_until_quiet(settings, topic, min_count=4)
        envs = [Envelope.from_json(r.value) for r in recs]
        assert [e.payload["data"]["Seq"] for e in envs] == [1, 2, 3, 4], "once each, in order"
        poison = recs[1]
        assert dict(poison.headers)["timestamp_source"] == b"received_at"
        assert poison.timestamp == envs[1].received_at_ms and envs[1].created_at_ms > poison.timestamp
        assert all("timestamp_source" not in dict(r.headers) for i, r in enumerate(recs) if i != 1)
        assert rx.metric("tpipe_forward_timestamp_replaced_total") == 1
        assert await read_until_quiet(settings, f"{topic_prefix}.dlq", quiet_s=0.5) == []
        _figures("clock_ahead_bounded_topic", status=r.status_code, ended_in=topic,
                 record_timestamp="received_at (header timestamp_source)", next_event_s=took)
    finally:
        rx.terminate()


async def test_a_bound_set_after_start_is_handled_when_kafka_refuses(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """The forwarder read "any time" at start; an operator then bounds the topic. Kafka refuses the
    batch holding the future event: its neighbours are delivered once, in order, and the poison
    with its receive time; forwarding goes on."""
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.data"
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    try:
        vin = "VFUTURE0000000003"
        assert _post(rx, _event(vin, 0)).status_code == 202
        await read_all(settings, topic, expected_count=1)
        await alter_topic(settings, topic, {"message.timestamp.after.max.ms": "3600000"})
        ahead = datetime.now(UTC) + timedelta(hours=3)
        body = [_event(vin, 1), _event(vin, 2, created=ahead), _event(vin, 3)]
        r = _post(rx, body)
        assert r.status_code == 202
        took = await _next_event_s(rx, settings, topic, vin, 4)
        recs = await read_until_quiet(settings, topic, min_count=5)
        envs = [Envelope.from_json(r.value) for r in recs]
        assert [e.payload["data"]["Seq"] for e in envs] == [0, 1, 2, 3, 4], "once each, in order"
        assert dict(recs[2].headers)["timestamp_source"] == b"received_at"
        _figures("clock_ahead_bound_changed", status=r.status_code, ended_in=topic,
                 record_timestamp="received_at after Kafka's refusal", next_event_s=took)
    finally:
        rx.terminate()


async def test_a_record_too_large_for_its_topic_goes_to_the_dlq_and_its_neighbours_once_in_order(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.data"
    await create_topic(settings, topic, {"max.message.bytes": "20000"}, partitions=1)
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--forward-batch-events", "50").start()
    try:
        vin = "VLARGE00000000001"
        big = os.urandom(40_000).hex()  # incompressible: lz4 cannot bring it under the topic's limit
        body = [_event(vin, 1), _event(vin, 2, Blob=big), _event(vin, 3)]
        r = _post(rx, body)
        assert r.status_code == 202
        took = await _next_event_s(rx, settings, topic, vin, 4)
        recs = await read_until_quiet(settings, topic, min_count=3)
        assert [Envelope.from_json(r.value).payload["data"]["Seq"] for r in recs] == [1, 3, 4]
        (dead,) = await read_until_quiet(settings, f"{topic_prefix}.dlq", min_count=1)
        h = dict(dead.headers)
        assert h[DLQ_ERROR_TYPE] == b"RecordTooLarge", "known from the topic's config before Kafka is asked"
        assert h[DLQ_SOURCE_TOPIC] == topic.encode() and b"max.message.bytes 20000" in h[DLQ_ERROR]
        assert Envelope.from_json(dead.value).payload["data"]["Blob"] == big
        assert rx.metric('tpipe_forward_dead_letters_total{reason="kafka_refused"}') == 1
        _figures("record_too_large", status=r.status_code, ended_in=f"{topic_prefix}.dlq",
                 reason=h[DLQ_ERROR].decode()[:80], next_event_s=took)
    finally:
        rx.terminate()


async def test_a_size_limit_set_after_start_is_found_by_halving_the_refused_batch(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """The forwarder read the topic's size limit at start; an operator then lowers it. Kafka refuses
    the batch holding the large event without saying which record: the refused records are halved
    until the large one is alone (the DLQ), the others land once each, in order."""
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.data"
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    try:
        vin = "VLARGE00000000002"
        assert _post(rx, _event(vin, 0)).status_code == 202
        await read_all(settings, topic, expected_count=1)
        await alter_topic(settings, topic, {"max.message.bytes": "20000"})
        big = os.urandom(40_000).hex()
        body = [_event(vin, i) for i in range(1, 40)] + [_event(vin, 40, Blob=big)] + [_event(vin, i) for i in range(41, 60)]
        assert _post(rx, body).status_code == 202
        took = await _next_event_s(rx, settings, topic, vin, 60)
        recs = await read_until_quiet(settings, topic, min_count=60)
        seqs = [Envelope.from_json(r.value).payload["data"]["Seq"] for r in recs]
        assert seqs == [s for s in range(61) if s != 40], "once each, in order"
        (dead,) = await read_until_quiet(settings, f"{topic_prefix}.dlq", min_count=1)
        assert dict(dead.headers)[DLQ_ERROR_TYPE] in (b"MessageSizeTooLargeError", b"RecordListTooLargeError")
        assert Envelope.from_json(dead.value).payload["data"]["Seq"] == 40
        _figures("record_too_large_limit_changed", status=202, ended_in=f"{topic_prefix}.dlq", next_event_s=took)
    finally:
        rx.terminate()


@pytest.mark.parametrize(
    ("name", "body", "status", "reason"),
    [
        ("nested_300", b'{"vin":"V","data":{"Deep":' + b"[" * 300 + b"]" * 300 + b"}}", 400, "too_deep"),
        ("nested_2000", b'{"vin":"V","data":{"Deep":' + b"[" * 2000 + b"]" * 2000 + b"}}", 400, "too_deep"),
        ("array_of_200k_empty_objects", b"[" + b",".join([b"{}"] * 200_000) + b"]", 413, "too_many_events"),
        ("concatenated_300k_empty_objects", b"{}" * 300_000, 413, "too_many_events"),
    ],
)
async def test_bodies_over_the_limits_are_refused_with_a_reason_and_counted(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str, name: str, body: bytes, status: int, reason: str
) -> None:
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    try:
        t = time.monotonic()
        r = _post(rx, body)
        answered = round(time.monotonic() - t, 3)
        assert r.status_code == status, r.text
        assert r.json()["reason"]
        assert rx.metric(f'tpipe_http_requests_total{{status="{status}"}}') == 1
        assert rx.metric(f'tpipe_bodies_refused_total{{reason="{reason}"}}') == 1
        assert rx.metric('tpipe_http_requests_total{status="500"}') == 0
        took = await _next_event_s(rx, settings, f"{topic_prefix}.data", "VNEXT000000000001", 1)
        assert rx.health()["spool"]["pending_events"] == 0  # type: ignore[index]
        _figures(name, status=r.status_code, ended_in="refused (nothing stored)", reason=r.json()["reason"],
                 answered_s=answered, next_event_s=took)
    finally:
        rx.terminate()


async def test_identical_events_in_one_body_are_published_once(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    try:
        ev, other = _event("VDUP0000000000001", 1), _event("VDUP0000000000001", 2)
        r = _post(rx, [ev, ev, other, ev, other])
        assert r.status_code == 202
        recs = await read_until_quiet(settings, f"{topic_prefix}.data", min_count=2)
        assert [Envelope.from_json(r.value).payload["data"]["Seq"] for r in recs] == [1, 2]
    finally:
        rx.terminate()


async def test_a_spooled_body_the_parser_now_refuses_goes_to_the_dlq_as_received(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """Accepted under a deeper limit, forwarded by a receiver restarted with a shallower one: the
    body is dead-lettered as received, with the parser's reason, and forwarding goes on."""
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    deep = b'{"vin":"VDEEP000000000001","data":{"Deep":' + b"[" * 80 + b"]" * 80 + b"}}"
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--max-body-depth", "100")
    rx.extra += ["--kafka", "127.0.0.1:1", "--drain-timeout-s", "1"]  # no Kafka: the body stays spooled
    rx.start()
    assert _post(rx, deep).status_code == 202
    assert rx.terminate() == 0
    rx.extra = ["--max-body-depth", "64"]
    rx.start()
    try:
        took = await _next_event_s(rx, settings, f"{topic_prefix}.data", "VNEXT000000000002", 1)
        (dead,) = await read_until_quiet(settings, f"{topic_prefix}.dlq", min_count=1)
        h = dict(dead.headers)
        assert dead.value == deep and h[DLQ_ERROR_TYPE] == b"BodyError"
        assert h[DLQ_ERROR] == b"nesting deeper than 64 levels"
        await rx.wait_drained()
        _figures("body_parser_refuses", status=202, ended_in=f"{topic_prefix}.dlq (body as received)",
                 next_event_s=took)
    finally:
        rx.terminate()


async def test_broker_mode_settles_the_same_poisons_on_the_request_path(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """``--durability broker``: a future event on a bounded topic and a record too large for its topic
    are answered 202 once they are in Kafka (their topic with the receive time / the DLQ), and the
    producer keeps working for the next request."""
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.data"
    await create_topic(settings, topic, {"message.timestamp.after.max.ms": "3600000", "max.message.bytes": "20000"},
                       partitions=1)
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--durability", "broker").start()
    try:
        vin = "VBROKER0000000001"
        ahead = _event(vin, 1, created=datetime.now(UTC) + timedelta(hours=3))
        r1 = _post(rx, ahead)
        assert r1.status_code == 202 and r1.json()["events"][0]["topic"] == topic
        r2 = _post(rx, [_event(vin, 2), _event(vin, 3, Blob=os.urandom(40_000).hex()), _event(vin, 4)])
        assert r2.status_code == 202, r2.text
        r3 = _post(rx, _event(vin, 5))
        assert r3.status_code == 202
        recs = await read_until_quiet(settings, topic, min_count=4)
        assert [Envelope.from_json(r.value).payload["data"]["Seq"] for r in recs] == [1, 2, 4, 5]
        assert dict(recs[0].headers)["timestamp_source"] == b"received_at"
        (dead,) = await read_until_quiet(settings, f"{topic_prefix}.dlq", min_count=1)
        assert Envelope.from_json(dead.value).payload["data"]["Seq"] == 3
    finally:
        rx.terminate()
