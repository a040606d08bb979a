"""`tpipe dlq` round trips with real parts: a credits worker (its own process) on PostgreSQL whose
INSERT permission was revoked dead-letters every credits event (a redelivery among them); the grant
comes back; `tpipe dlq redrive` sends them back once and the ledger is right; a second redrive does
nothing. And a webhook body the receiver could not parse can only be redriven into a receiver."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg2
import pytest
from aiokafka.structs import TopicPartition
from sqlalchemy.engine import make_url

from plumbing.kafka_clients import ensure_topics, make_consumer, make_producer
from plumbing.settings import KafkaSettings
from schemas.parse import parse_object
from schemas.topics import all_topics, dlq_topic, headers_for, key_for, topic_for
from tests.support.kafka_broker import read_all
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401
from tests.support.processes import TOKEN, new_receiver
from tpipe.cli import main

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _kafka(s: KafkaSettings) -> list[str]:
    return ["--kafka", s.kafka, "--topic-prefix", s.topic_prefix]


def _sql(url: str, *statements: str) -> list[Any]:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            out: list[Any] = []
            for st in statements:
                cur.execute(st)
                if cur.description:
                    out = cur.fetchall()
            return out
    finally:
        conn.close()


def _credit_payloads() -> list[dict[str, Any]]:
    balance, out = 1000, []
    for i, (kind, cost) in enumerate([("wake_up", 20), ("command", 1), ("vehicle_data", 2), ("command", 1)]):
        balance -= cost
        out.append({"createdAt": f"2026-01-01T08:0{i}:00.000Z", "vin": "5YJ3E1EA0PF000042",
                    "credits": {"type": kind, "name": kind, "cost": cost, "balance": balance}})
    return out


async def _produce_like_the_receiver(s: KafkaSettings, payloads: list[dict[str, Any]]) -> list[str]:
    """The records the forwarder would publish, the second one twice (a redelivered webhook)."""
    envs = [env for i, p in enumerate(payloads) for env in parse_object(p, received_at_ms=T0 + i)]
    envs.insert(2, parse_object(payloads[1], received_at_ms=T0 + 60_000)[0])  # same event_id, later
    producer = make_producer(s)
    await producer.start()
    try:
        for env in envs:
            await producer.send_and_wait(topic_for(env.type, s.topic_prefix), env.to_json(), key=key_for(env),
                                         headers=headers_for(env), timestamp_ms=env.created_at_ms)
    finally:
        await producer.stop()
    return [e.event_id for e in envs]


async def _end(s: KafkaSettings, topic: str) -> int:
    """Records ever written to ``topic`` (the sum of its end offsets)."""
    consumer = make_consumer(s, group_id=None)
    await consumer.start()
    try:
        parts = range(s.topic_partitions)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        await consumer.stop()


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return orjson.loads(capsys.readouterr().out)


def _wait(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)  # poll interval


def test_credits_dead_lettered_fixed_redriven_once(
    kafka_settings: KafkaSettings, postgres_url: str, tmp_path: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = kafka_settings
    asyncio.run(ensure_topics(s, all_topics(s.topic_prefix)))
    admin_url = fresh_database(postgres_url)
    role = f"w{os.getpid()}_{s.topic_prefix}"
    _sql(admin_url, f'CREATE ROLE "{role}" LOGIN', f'GRANT ALL ON SCHEMA public TO "{role}"')
    worker_url = make_url(admin_url).set(username=role).render_as_string(hide_password=False)
    log = tmp_path / "credits.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
    with open(log, "wb") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tpipe.cli", "consume", "credits", "--db-url", worker_url, *_kafka(s),
             "--metrics-port", "0", "--batch-timeout-ms", "200", "--retry-backoff-ms", "100"],
            stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        _wait(lambda: bool(_sql(admin_url, "SELECT to_regclass('credit_events') IS NOT NULL")[0][0]), "the ledger")
        # the fault: the worker's database user loses INSERT on the ledger (a migration gone wrong)
        _sql(admin_url, f'REVOKE INSERT ON credit_events FROM "{role}"')
        payloads = _credit_payloads()
        ids = asyncio.run(_produce_like_the_receiver(s, payloads))
        dlq = asyncio.run(read_all(s, dlq_topic(s.topic_prefix), expected_count=len(ids), timeout=60))
        assert len(dlq) == len(ids), log.read_text()[-3000:]

        listed = _json(capsys, ["dlq", "list", "--worker", "credits", "--format", "json", *_kafka(s)])
        assert sorted(r["event_id"] for r in listed) == sorted(ids)
        assert {r["error_type"] for r in listed} == {"ProgrammingError"}
        assert all("permission denied" in r["reason"] and r["source_topic"] == topic_for("credits", s.topic_prefix)
                   and r["source_offset"] is not None for r in listed)
        assert main(["dlq", "list", "--worker", "alerts", "--format", "json", *_kafka(s)]) == 0
        assert orjson.loads(capsys.readouterr().out) == []  # filters hold
        shown = _json(capsys, ["dlq", "show", listed[0]["dlq"], "--format", "json", *_kafka(s)])
        assert shown[0]["value"]["event_id"] == listed[0]["event_id"] and "dlq_error" in shown[0]["headers"]

        # a dry run sends nothing
        credits_end = asyncio.run(_end(s, topic_for("credits", s.topic_prefix)))
        plan = _json(capsys, ["dlq", "redrive", "--worker", "credits", "--dry-run", "--format", "json", *_kafka(s)])
        assert (plan["to_send"], plan["sent"]) == (len(ids), None)
        assert asyncio.run(_end(s, topic_for("credits", s.topic_prefix))) == credits_end

        _sql(admin_url, f'GRANT INSERT ON credit_events TO "{role}"')  # the cause fixed
        done = _json(capsys, ["dlq", "redrive", "--worker", "credits", "--format", "json", *_kafka(s)])
        assert done["sent"] == len(ids) and all(i["target"] == f"topic {topic_for('credits', s.topic_prefix)}"
                                                for i in done["items"])

        def ledger() -> list[Any]:
            return _sql(admin_url, "SELECT event_id, balance FROM credit_events ORDER BY created_at_ms")

        _wait(lambda: len(ledger()) == len(payloads), "the redriven events in the ledger")
        assert [b for _, b in ledger()] == [p["credits"]["balance"] for p in payloads]  # type: ignore[index]
        report = _json(capsys, ["credits", "report", "--db-url", admin_url, "--format", "json"])
        assert report["totals"]["events"] == 4 and report["balance"] == 1000 - 24

        # the same selection again: nothing is sent
        again = _json(capsys, ["dlq", "redrive", "--worker", "credits", "--format", "json", *_kafka(s)])
        assert (again["to_send"], again["skipped"]) == (0, len(ids))
        assert all(i["note"].startswith("already redriven") for i in again["items"])
        assert asyncio.run(_end(s, topic_for("credits", s.topic_prefix))) == credits_end + len(ids)
        stats = _json(capsys, ["dlq", "stats", "--format", "json", *_kafka(s)])
        assert stats["totals"] == [{**stats["totals"][0], "worker": "credits", "error_type": "ProgrammingError",
                                    "count": len(ids), "redriven": len(ids)}]
        assert "Traceback" not in log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0


def test_unparsed_webhook_body_is_redriven_only_into_a_receiver(
    kafka_settings: KafkaSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.records import RecordBuilder
    from ingest.spool.frame import SpooledBody

    s = kafka_settings
    asyncio.run(ensure_topics(s, all_topics(s.topic_prefix)))
    body = orjson.dumps({"createdAt": "2026-01-01T09:00:00Z", "vin": "5YJ3E1EA0PF000077", "data": {"Odometer": 12.5}})
    # exactly what the receiver dead-letters for a body its parser refused (e.g. under older limits)
    rec = RecordBuilder(s.topic_prefix, None).raw_dead_letter(
        SpooledBody(T0, T0, body), "body nested too deep", "BodyError")

    async def put() -> None:
        producer = make_producer(s)
        await producer.start()
        try:
            await producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers,
                                         timestamp_ms=rec.timestamp_ms)
        finally:
            await producer.stop()

    asyncio.run(put())
    listed = _json(capsys, ["dlq", "list", "--error-type", "BodyError", "--format", "json", *_kafka(s)])
    assert [(r["worker"], r["kind"], r["source_topic"]) for r in listed] == [("receiver", "webhook_body", None)]
    plan = _json(capsys, ["dlq", "redrive", "--all", "--dry-run", "--format", "json", *_kafka(s)])
    assert plan["to_send"] == 0 and "--to-url" in plan["items"][0]["note"]

    receiver = new_receiver(tmp_path, s.kafka, s.topic_prefix).start()
    try:
        url = receiver.url + "/webhook"
        done = _json(capsys, ["dlq", "redrive", "--all", "--to-url", url, "--token", TOKEN, "--format", "json",
                              *_kafka(s)])
        assert done["sent"] == 1
        [env] = parse_object(orjson.loads(body), received_at_ms=0)
        records = asyncio.run(read_all(s, topic_for("data", s.topic_prefix), expected_count=1, timeout=60))
        assert [dict(r.headers)["event_id"].decode() for r in records] == [env.event_id]
        again = _json(capsys, ["dlq", "redrive", "--all", "--to-url", url, "--token", TOKEN, "--format", "json",
                               *_kafka(s)])
        assert again["sent"] == 0 and again["skipped"] == 1  # recorded: not sent twice
        assert TOKEN not in capsys.readouterr().err
    finally:
        receiver.terminate()
