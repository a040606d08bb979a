"""``--durability broker``: 202 only once Kafka acknowledged; 503 with Retry-After when it cannot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from localbroker import LocalBroker
from schemas.envelope import Envelope
from tests.support.kafka_broker import broker_settings, read_all
from tests.support.receiver_harness import auth, ingest_settings, running_receiver

pytestmark = pytest.mark.kafka


async def test_broker_mode_acknowledges_after_kafka_and_refuses_when_it_is_down(
    local_broker_factory: Callable[..., LocalBroker], tmp_path: Path, topic_prefix: str
) -> None:
    broker = local_broker_factory()
    await broker.astart()
    kafka = broker_settings(broker.bootstrap, topic_prefix)
    settings = ingest_settings(kafka, tmp_path / "spool", durability="broker", broker_timeout_s=2.0)
    body = b'{"createdAt":"2025-01-01T00:00:00Z","vin":"V1","state":"asleep"}'
    async with running_receiver(settings) as (_, client):
        r = await client.post("/webhook", content=body, headers=auth())
        assert r.status_code == 202
        # acknowledged means already in Kafka: readable right away, nothing spooled locally
        got = await read_all(kafka, f"{topic_prefix}.state", expected_count=1, timeout=10)
        assert [Envelope.from_json(g.value).event_id for g in got] == [r.json()["events"][0]["event_id"]]
        assert r.json()["durability"] == "broker", "broker mode knows the ids when it answers"
        assert not (tmp_path / "spool").exists(), "broker mode keeps no local state"
        assert (await client.get("/readyz")).status_code == 200
        await broker.akill()
        r = await client.post("/webhook", content=body.replace(b"asleep", b"online"), headers=auth())
        assert r.status_code == 503 and r.json()["error"] == "kafka_unavailable"
        assert r.headers["retry-after"].isdigit()
