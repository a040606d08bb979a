"""Shared fixtures: one real Kafka broker per test session, unique topic names per test.

Where the broker comes from, first match wins:
1. ``KAFKA_BOOTSTRAP_SERVERS`` set: that cluster, as is (no lifecycle).
2. A Docker engine answers: testcontainers' Kafka (KRaft).
3. Otherwise: tpipe's own broker from Maven-resolved jars (``localbroker.LocalBroker``).
If none can start the tests FAIL (Kafka tests are never skipped).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localbroker import LocalBroker
from plumbing.settings import KafkaSettings
from tests.support.kafka_broker import broker_settings

log = logging.getLogger("tests.kafka")


def _docker_answers(timeout: float = 3.0) -> bool:
    try:
        import docker

        client = docker.from_env(timeout=int(timeout))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _start_testcontainers_kafka() -> tuple[str, Callable[[], None]]:
    from testcontainers.community.kafka import KafkaContainer

    image = os.environ.get("TPIPE_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
    container = KafkaContainer(image).with_kraft()
    container.start()
    return container.get_bootstrap_server(), container.stop


def _start_local_broker() -> tuple[str, Callable[[], None]]:
    broker = LocalBroker()  # free ports, temp data dir
    try:
        broker.start()
    except BaseException:
        broker.cleanup()
        raise
    log.info("local kafka broker %s started in %.1fs", broker.bootstrap, broker.startup_seconds or 0)
    return broker.bootstrap, broker.cleanup


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the session's Kafka broker (``host:port``)."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    errors: list[str] = []
    started: tuple[str, Callable[[], None]] | None = None
    if _docker_answers():
        try:
            started = _start_testcontainers_kafka()
        except Exception as e:
            errors.append(f"testcontainers Kafka: {e!r}")
    else:
        errors.append("no Docker engine answers (docker ping)")
    if started is None:
        try:
            started = _start_local_broker()
        except Exception as e:
            errors.append(f"local jar broker (localbroker.LocalBroker): {e}")
    if started is None:
        pytest.fail(
            "no Kafka broker available for the tests:\n- "
            + "\n- ".join(errors)
            + "\nSet KAFKA_BOOTSTRAP_SERVERS, start Docker, or make `python -m localbroker --resolve-only`"
            " work (needs java 17+ and mvn).",
            pytrace=False,
        )
    bootstrap, stop = started
    try:
        yield bootstrap
    finally:
        stop()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix unique to this test (``t<hex8>``): tests share one broker, never topics."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    """tpipe settings pointing at the session broker with this test's own topic prefix, 3 partitions."""
    return broker_settings(kafka_bootstrap, topic_prefix=topic_prefix, topic_partitions=3)


@pytest.fixture(scope="session")
def sasl_broker() -> Iterator[LocalBroker]:
    """A second local broker with a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512), started only
    when a test asks for it. ``.sasl_bootstrap``, ``.username``, ``.password``, ``.client_settings(mech)``."""
    broker = LocalBroker(sasl=True)
    try:
        broker.start()
    except Exception as e:
        broker.cleanup()
        pytest.fail(f"could not start the SASL Kafka broker: {e}", pytrace=False)
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def local_broker_factory(tmp_path: Path) -> Iterator[Callable[..., LocalBroker]]:
    """Make extra LocalBrokers this test controls (kill/restart/stop), with persistent data dirs under
    ``tmp_path``; all are stopped after the test. ``factory(**LocalBroker kwargs)`` returns it unstarted."""
    made: list[LocalBroker] = []

    def factory(**kwargs: Any) -> LocalBroker:
        kwargs.setdefault("data_dir", tmp_path / f"broker{len(made)}")
        b = LocalBroker(**kwargs)
        made.append(b)
        return b

    yield factory
    for b in made:
        b.cleanup()
