"""The local Kafka broker (localbroker) really serves, survives SIGKILL + restart, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from localbroker import LocalBroker, free_port
from plumbing.kafka_clients import ensure_topics
from plumbing.settings import KafkaSettings
from tests.support.kafka_broker import produce, read_all, read_until_quiet
from tests.support.paths import REPO as REPO_ROOT

pytestmark = pytest.mark.kafka

REPO = REPO_ROOT


async def test_session_broker_serves_produce_consume(kafka_settings: KafkaSettings) -> None:
    topic = f"{kafka_settings.topic_prefix}.roundtrip"
    assert await ensure_topics(kafka_settings, [topic]) == [topic]
    values = [f"v{i}".encode() for i in range(50)]
    await produce(kafka_settings, topic, [(str(i % 7).encode(), v) for i, v in enumerate(values)])
    records = await read_all(kafka_settings, topic, expected_count=50)
    assert sorted(r.value for r in records) == sorted(values)
    assert {r.partition for r in records} <= {0, 1, 2}
    quiet = await read_until_quiet(kafka_settings, topic, quiet_s=0.5, min_count=50)
    assert len(quiet) == 50  # exactly: nothing duplicated


async def test_sigkill_and_restart_keeps_data(local_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = await local_broker_factory().astart()
    port, data_dir = broker.port, broker.data_dir
    settings = broker.client_settings(topic_partitions=2)
    topic = "crash.survivor"
    await ensure_topics(settings, [topic])
    await produce(settings, topic, [f"before-{i}".encode() for i in range(200)])

    old_pid = broker.pid
    await broker.akill()
    assert not broker.is_running()
    assert broker.last_stop_clean is False

    await broker.arestart()
    assert broker.is_running() and broker.pid != old_pid
    assert (broker.port, broker.data_dir) == (port, data_dir)
    records = await read_all(settings, topic, expected_count=200)
    assert sorted(r.value for r in records) == sorted(f"before-{i}".encode() for i in range(200))

    # and it still takes writes after the crash
    await produce(settings, topic, [b"after"])
    records = await read_all(settings, topic, expected_count=201)
    assert len(records) == 201


async def test_clean_stop_exits_and_frees_port(local_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = await local_broker_factory().astart()
    rc = await broker.astop()
    assert broker.last_stop_clean is True
    assert rc in (0, 143)  # the JVM exits 128+SIGTERM after Kafka's shutdown hook ran
    assert not broker.is_running()
    tail = broker.log_tail(200)
    assert "Kafka Server started" in tail
    assert "shutting down" in tail
    # a clean restart on the same dir works too (storage is not formatted again)
    await broker.arestart()
    assert "Formatting" not in broker.log_tail(400)
    await broker.astop()


def test_cli_prints_bootstrap_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "localbroker", "--port", str(port), "--data-dir", str(tmp_path / "d")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # printed only once the broker serves requests
        assert line == f"127.0.0.1:{port}", proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "d" / "kraft-logs" / "meta.properties").is_file()
