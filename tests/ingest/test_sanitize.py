"""``ingest.sanitize.strip_addresses`` on the error text it meets: aiokafka's and the OS's, made live."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.sanitize import ADDRESS, strip_addresses
from localbroker import free_port


def assert_no_address(text: str, *parts: str) -> None:
    for part in parts:
        assert part not in text, f"{part!r} left in {text!r}"
    assert "AddressFamily" not in text, text


@pytest.mark.parametrize(
    "bootstrap",
    ["127.0.0.1:{p}", "localhost:{p}", "[::1]:{p}", "no-such-host.invalid:{p}", "127.0.0.1:{p},localhost:{q}"],
)
async def test_kafka_bootstrap_errors_keep_their_kind_and_lose_their_addresses(bootstrap: str) -> None:
    p, q = free_port(), free_port()  # nothing listens there
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap.format(p=p, q=q), request_timeout_ms=3000)
    try:
        with pytest.raises(KafkaError) as caught:
            await producer.start()
    finally:
        await producer.stop()
    text = f"{type(caught.value).__name__}: {caught.value}"  # as the forwarder reports it
    assert str(p) in text, "the raw error names the broker (else this test proves nothing)"
    out = strip_addresses(text)
    assert out is not None and out.startswith("KafkaConnectionError: ") and ADDRESS in out, out
    assert_no_address(out, str(p), str(q), "127.0.0.1", "localhost", "::1", "no-such-host")


async def test_os_connect_errors_lose_their_addresses() -> None:
    port = free_port()
    with pytest.raises(OSError) as caught:
        await asyncio.open_connection("127.0.0.1", port)
    text = f"{type(caught.value).__name__}: {caught.value}"
    assert f"('127.0.0.1', {port})" in text
    out = strip_addresses(text)
    assert out is not None and out.startswith("ConnectionRefusedError: ") and "Connect call failed" in out
    assert_no_address(out, str(port), "127.0.0.1")


@pytest.mark.parametrize(
    ("text", "gone"),
    [  # the shapes of aiokafka's connection messages (aiokafka/conn.py, client.py)
        ("KafkaConnectionError: Connection at kafka-0.kafka.svc.cluster.local:9093 closed", ["kafka-0", "9093"]),
        ("KafkaConnectionError: No connection to broker at 10.20.30.40:9092", ["10.20.30.40", "9092"]),
        ("KafkaConnectionError: Connection at kafka:9092 broken: [Errno 104] reset", ["kafka:", "9092"]),
        ("KafkaConnectionError: Connection at [fd00::12]:9093 closed", ["fd00", "9093"]),
        ("KafkaConnectionError: Connection at 2001:db8::7:9093 closed", ["2001", "db8", "9093"]),
        ("Unable connect to \"::1:9092\": [Errno 111] Connect call failed ('::1', 9092, 0, 0)", ["::1", "9092"]),
        ("<AIOKafkaConnection host=kafka-1.internal port=9093> timed out", ["kafka-1", "9093"]),
        ("SASL_SSL://broker.example.com:9093 refused", ["broker.example.com", "9093"]),
    ],
)
def test_address_shapes(text: str, gone: list[str]) -> None:
    out = strip_addresses(text)
    assert out is not None and ADDRESS in out
    assert_no_address(out, *gone)


@pytest.mark.parametrize(
    "text",
    [
        "KafkaTimeoutError: timed out at 2025-01-01T12:30:45Z after 12:30",
        "NodeNotReadyError: Attempt to send a request to node which is not ready (node id 1).",
        "SaslAuthenticationFailed: Authentication failed during authentication due to invalid credentials "
        "with SASL mechanism SCRAM-SHA-512",
        "forwarder process exited with code -9",
    ],
)
def test_text_without_addresses_is_unchanged(text: str) -> None:
    assert strip_addresses(text) == text


def test_none_and_empty_pass_through() -> None:
    assert strip_addresses(None) is None
    assert strip_addresses("") == ""
