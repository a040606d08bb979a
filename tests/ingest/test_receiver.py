"""The receiver end to end on a real broker: every event type and format in, read back from Kafka."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from ingest.tokens import TokensFile
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.topics import HEADER_NAMES
from tests.support.kafka_broker import read_all
from tests.support.paths import FIXTURES as FIXTURES_DIR
from tests.support.receiver_harness import TOKEN, auth, events_of, ingest_settings, running_receiver

FIXTURES = FIXTURES_DIR

pytestmark = pytest.mark.kafka


def _fixtures() -> list[tuple[str, str, bytes]]:
    out = []
    for fmt_dir in sorted(p for p in FIXTURES.iterdir() if p.is_dir() and p.name != "bench"):
        for f in sorted(fmt_dir.glob("*.json")):
            out.append((fmt_dir.name, f.stem, f.read_bytes()))
    return out


async def test_every_fixture_lands_on_its_topic_with_key_headers_and_envelope(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = ingest_settings(kafka_settings, tmp_path / "spool")
    expected: dict[str, dict[str, object]] = {}
    async with running_receiver(settings) as (_, client):
        for fmt, name, body in _fixtures():
            r = await client.post("/webhook", content=body, headers=auth())
            assert r.status_code == 202, (fmt, name, r.text)
            assert r.json() == {"status": "accepted", "durability": "spool"}
            events = events_of(body, kafka_settings.topic_prefix)
            assert len(events) >= 1
            for ev in events:
                assert ev["topic"] == f"{kafka_settings.topic_prefix}.{ev['type']}"
                expected[ev["event_id"]] = {"fmt": fmt, "name": name, **ev}
        assert await app_drained(client)
    by_topic: dict[str, list[str]] = {}
    for eid, ev in expected.items():
        by_topic.setdefault(str(ev["topic"]), []).append(eid)
    seen = 0
    for topic, ids in by_topic.items():
        records = await read_all(kafka_settings, topic, expected_count=len(ids))
        got = {}
        for rec in records:
            env = Envelope.from_json(rec.value)
            headers = {k: v.decode() for k, v in rec.headers}
            assert tuple(headers) == HEADER_NAMES
            assert headers["event_id"] == env.event_id and headers["event_type"] == env.type
            assert rec.timestamp == env.created_at_ms, "record timestamp is the event's created_at"
            expected_key = (env.vin or ("account" if env.type == "credits" else "unknown")).encode()
            assert rec.key == expected_key
            assert headers["vin"] == (env.vin or "")
            assert headers["source_format"] == env.source_format
            got[env.event_id] = env
        assert set(got) == set(ids), topic
        seen += len(got)
    assert seen == len(expected)
    types = {ev["type"] for ev in expected.values()}
    assert {"data", "state", "vehicle_data", "alerts", "errors", "connectivity", "config", "credits",
            "live_status", "site_info", "tariff_content_v2", "energy_totals", "wall_connector_totals",
            "unknown"} <= types
    formats = {Envelope.source_format for Envelope in []} | {ev["fmt"] for ev in expected.values()}
    assert {"teslemetry", "tesla_raw", "splunk"} <= formats


async def app_drained(client: object) -> bool:
    """Poll /healthz until the spool reports nothing pending (the forwarder confirmed it all)."""
    import asyncio
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = await client.get("/healthz")  # type: ignore[attr-defined]
        if r.json()["spool"]["pending_events"] == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_redelivered_body_keeps_its_event_id_and_values_are_kept_as_sent(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    body = orjson.dumps(
        {
            "createdAt": "2024-02-24T04:58:44.983607402Z",
            "vin": "LRW3F7EK4NC700001",
            "data": {"VehicleSpeed": "34.797", "Locked": "true", "MinutesToArrival": None, "Gear": "ShiftStateD"},
        }
    )
    settings = ingest_settings(kafka_settings, tmp_path / "spool")
    async with running_receiver(settings) as (_, client):
        for _ in range(2):
            assert (await client.post("/webhook", content=body, headers=auth())).status_code == 202
        assert await app_drained(client)
    records = await read_all(kafka_settings, f"{kafka_settings.topic_prefix}.data", expected_count=2)
    envs = [Envelope.from_json(r.value) for r in records]
    assert len(envs) == 2 and envs[0].event_id == envs[1].event_id
    env = envs[0]
    assert env.created_at == "2024-02-24T04:58:44.983607402Z"
    assert env.created_at_ms == 1708750724983
    assert env.payload["data"] == {"VehicleSpeed": "34.797", "Locked": "true", "MinutesToArrival": None,
                                   "Gear": "ShiftStateD"}


async def test_numeric_site_id_is_the_key(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    body = b'{"createdAt":"2025-01-01T00:00:00Z","site_id":1234567890,"live_status":{"solar_power":1200}}'
    settings = ingest_settings(kafka_settings, tmp_path / "spool")
    async with running_receiver(settings) as (_, client):
        r = await client.post("/webhook", content=body, headers=auth())
        assert r.status_code == 202
        assert await app_drained(client)
    rec = (await read_all(kafka_settings, f"{kafka_settings.topic_prefix}.live_status", expected_count=1))[0]
    assert rec.key == b"1234567890"


async def test_auth_bearer_query_and_refusals(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.json"
    file_token, entry = TokensFile(tokens_file).new("ci")
    settings = ingest_settings(kafka_settings, tmp_path / "spool", tokens_file=tokens_file)
    body = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V1","state":"online"}'
    async with running_receiver(settings) as (app, client):
        assert (await client.post("/webhook", content=body)).status_code == 401
        r = await client.post("/webhook", content=body, headers=auth("wrong"))
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert (await client.post("/webhook", content=body, headers={"Authorization": "Basic " + TOKEN})).status_code == 401
        assert (await client.post("/webhook", content=body, headers=auth())).status_code == 202
        assert (await client.post(f"/webhook?token={TOKEN}", content=body)).status_code == 202
        assert (await client.post("/webhook", content=body, headers=auth(file_token))).status_code == 202
        TokensFile(tokens_file).revoke(entry.id)
        app.state.receiver._reload_tokens()  # what SIGHUP does; the file watcher does it within a second
        assert (await client.post("/webhook", content=body, headers=auth(file_token))).status_code == 401
        assert (await client.post(f"/webhook?token={file_token}", content=body)).status_code == 401
        assert await app_drained(client)
    records = await read_all(kafka_settings, f"{kafka_settings.topic_prefix}.state", expected_count=3, timeout=10)
    assert len(records) == 3, "only authorised requests were published"


async def test_bad_bodies_get_400_and_413_with_a_json_reason(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    settings = ingest_settings(kafka_settings, tmp_path / "spool", max_body_bytes=2048)
    async with running_receiver(settings) as (_, client):
        for bad in (b"{not json", b"", b"42", b'"a string"', b"[]", b"[1,2]"):
            r = await client.post("/webhook", content=bad, headers=auth())
            assert r.status_code == 400, bad
            assert r.json()["error"] == "bad_request" and r.json()["reason"]
        big = json.dumps({"vin": "V", "data": {"x": "y" * 4096}}).encode()
        r = await client.post("/webhook", content=big, headers=auth())
        assert r.status_code == 413 and "2048" in r.json()["reason"]

        async def chunks():  # no Content-Length: the limit holds while streaming
            for _ in range(10):
                yield b" " * 500

        r = await client.post("/webhook", content=chunks(), headers=auth())
        assert r.status_code == 413
        stats = (await client.get("/healthz")).json()["spool"]
        assert stats["pending_events"] == 0 and stats["pending_bytes"] == 0, "nothing refused was stored"


async def test_invalid_event_is_accepted_and_dead_lettered_with_reasons_and_counted(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    invalid = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V9","data":{"Gear":"ShiftStateD","Bad":[1,2]}}'
    valid = b'{"createdAt":"2025-01-01T00:00:01Z","vin":"V9","data":{"Gear":"ShiftStateP"}}'
    settings = ingest_settings(kafka_settings, tmp_path / "spool")
    prefix = kafka_settings.topic_prefix
    async with running_receiver(settings) as (_, client):
        before = (await client.get("/metrics")).text
        r = await client.post("/webhook", content=invalid, headers=auth())
        assert r.status_code == 202, "an event that parses is never refused, even if it does not validate"
        r2 = await client.post("/webhook", content=valid, headers=auth())
        assert r2.status_code == 202
        assert await app_drained(client)
        after = (await client.get("/metrics")).text
    dlq = await read_all(kafka_settings, f"{prefix}.dlq", expected_count=1)
    assert len(dlq) == 1
    headers = {k: v for k, v in dlq[0].headers}
    assert headers["dlq_error_type"] == b"SchemaValidationError" and b"Bad" in headers["dlq_error"]
    assert headers["dlq_worker"] == b"receiver"
    assert headers["dlq_source_topic"] == f"{prefix}.data".encode()
    reasons = orjson.loads(headers["validation_errors"])
    assert any("Bad" in r for r in reasons), reasons
    env = Envelope.from_json(dlq[0].value)
    assert env.payload["data"]["Bad"] == [1, 2], "the original event is kept whole"
    data = await read_all(kafka_settings, f"{prefix}.data", expected_count=1)
    assert [Envelope.from_json(d.value).payload["data"] for d in data] == [{"Gear": "ShiftStateP"}]

    def metric(text: str, line_start: str) -> float:
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert metric(after, 'tpipe_events_invalid_total{type="data"}') - metric(before, 'tpipe_events_invalid_total{type="data"}') == 1
    assert metric(after, 'tpipe_events_accepted_total{type="data"}') - metric(before, 'tpipe_events_accepted_total{type="data"}') == 2
    assert metric(after, 'tpipe_http_requests_total{status="202"}') - metric(before, 'tpipe_http_requests_total{status="202"}') == 2
    assert metric(after, "tpipe_forwarded_events_total") - metric(before, "tpipe_forwarded_events_total") == 2
    assert "tpipe_spool_depth_events 0.0" in after and "tpipe_broker_up 1.0" in after


@pytest.mark.parametrize("forwarder", ["inline", "process"])
async def test_both_forwarder_modes_deliver_and_count(kafka_settings: KafkaSettings, tmp_path: Path, forwarder: str) -> None:
    settings = ingest_settings(kafka_settings, tmp_path / "spool", forwarder=forwarder)
    body = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V7","data":{"Gear":"ShiftStateP"}}'
    def metric(text: str, name: str) -> float:  # the registry is per test process: compare before/after
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    async with running_receiver(settings) as (_, client):
        before = (await client.get("/metrics")).text
        assert (await client.post("/webhook", content=body, headers=auth())).status_code == 202
        assert await app_drained(client)
        health = (await client.get("/healthz")).json()
        after = (await client.get("/metrics")).text
    assert health["forwarder"]["mode"] == forwarder and health["broker"]["up"] is True
    for name in ('tpipe_events_accepted_total{type="data"}', "tpipe_forwarded_events_total "):
        assert metric(after, name) - metric(before, name) == 1, name
    (rec,) = await read_all(kafka_settings, f"{kafka_settings.topic_prefix}.data", expected_count=1)
    assert Envelope.from_json(rec.value).event_id == events_of(body, kafka_settings.topic_prefix)[0]["event_id"]


async def test_pipelined_batches_keep_each_vins_order(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    """A spool of 600 bodies forwarded in chunks of 40 (the batch API) with 3 chunks in flight: every VIN's
    events are in Kafka in the order they were received."""
    from ingest.forward.forwarder import Forwarder, producer_factory
    from ingest.records import RecordBuilder
    from ingest.spool.frame import encode
    from ingest.spool.log import Spool

    settings = ingest_settings(kafka_settings, tmp_path / "spool")
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30, segment_bytes=1 << 20)
    spool.open()
    spool.start()
    vins = [f"5YJ3E1EA0KF00000{i}" for i in range(5)]
    for seq in range(600):
        body = orjson.dumps({"createdAt": f"2025-01-01T00:{seq // 60:02d}:{seq % 60:02d}Z", "vin": vins[seq % 5],
                             "data": {"Seq": seq}})
        await spool.append_frame(encode(body, 1_700_000_000_000 + seq))
    fw = Forwarder(spool, producer_factory(settings), RecordBuilder(settings.topic_prefix, None),
                   batch_events=40, max_inflight=3)
    task = asyncio.get_running_loop().create_task(fw.run())
    try:
        assert await fw.drain(60)
    finally:
        await fw.close()
        await task
        await spool.close()
    assert fw.forwarded == 600
    records = await read_all(kafka_settings, f"{kafka_settings.topic_prefix}.data", expected_count=600)
    by_vin: dict[str, list[int]] = {}
    for rec in records:  # read_all returns each partition in offset order; a VIN lives in one partition
        env = Envelope.from_json(rec.value)
        by_vin.setdefault(str(env.vin), []).append(env.payload["data"]["Seq"])
    assert sorted(by_vin) == sorted(vins)
    for vin, seqs in by_vin.items():
        assert seqs == sorted(seqs) and len(seqs) == 120, vin


async def test_an_exception_on_the_request_path_is_a_counted_logged_500(
    kafka_settings: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Unit-level fault injection (the request check raising something it never should): the sender
    gets a JSON 500, the metric the "webhook failing" alert reads counts it, and the log says why."""
    import ingest.app
    from plumbing import metrics

    def broken(body: object, limits: object = None) -> None:
        raise RuntimeError("a bug in the request check")

    settings = ingest_settings(kafka_settings, tmp_path / "spool")
    before = metrics.HTTP_REQUESTS.labels("500")._value.get()
    async with running_receiver(settings) as (_, client):
        monkeypatch.setattr(ingest.app, "check_body", broken)
        r = await client.post("/webhook", content=b'{"vin":"V","state":"online"}', headers=auth())
        assert r.status_code == 500 and r.json()["error"] == "internal_error"
        monkeypatch.undo()
        ok = await client.post("/webhook", content=b'{"vin":"V","state":"online"}', headers=auth())
        assert ok.status_code == 202, "the next request is served"
    assert metrics.HTTP_REQUESTS.labels("500")._value.get() == before + 1
    assert any("webhook request failed" in r.getMessage() and r.exc_info for r in caplog.records)
