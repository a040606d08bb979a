"""tpipe's Kafka clients authenticate over SASL_PLAINTEXT with PLAIN and SCRAM against a real broker."""

from __future__ import annotations

import logging
import uuid

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError

from localbroker import LocalBroker
from plumbing.kafka_clients import make_producer
from plumbing.settings import SaslMechanism
from tests.support.kafka_broker import read_all

pytestmark = pytest.mark.kafka

MECHANISMS: list[SaslMechanism] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_sasl_produce_and_consume(sasl_broker: LocalBroker, mechanism: SaslMechanism) -> None:
    settings = sasl_broker.client_settings(mechanism)
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka == sasl_broker.sasl_bootstrap
    topic = f"t{uuid.uuid4().hex[:8]}.sasl"
    producer = make_producer(settings)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value=mechanism.encode(), key=b"k")
    finally:
        await producer.stop()
    assert meta.offset == 0
    records = await read_all(settings, topic, expected_count=1)
    assert [(r.key, r.value) for r in records] == [(b"k", mechanism.encode())]


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_sasl_wrong_password_is_rejected(
    sasl_broker: LocalBroker, mechanism: SaslMechanism, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sasl_broker.client_settings(mechanism, kafka_sasl_password="not-the-password")
    producer = make_producer(settings, request_timeout_ms=5000)
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaError) as exc:
        await producer.start()
    await producer.stop()
    assert isinstance(exc.value, KafkaConnectionError)
    # the broker was reached and refused the credentials (not merely unreachable)
    assert "Authentication failed" in caplog.text or "SaslAuthenticationFailed" in caplog.text, caplog.text


async def test_sasl_listener_rejects_unauthenticated_plaintext(sasl_broker: LocalBroker) -> None:
    settings = sasl_broker.client_settings(None, kafka=sasl_broker.sasl_bootstrap)
    producer = make_producer(settings, request_timeout_ms=3000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()
