"""`tpipe topics create|list`: retention and partitions chosen at creation, visible on the broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumers.replay.selection import ReplayError
from consumers.replay.topics import format_retention, parse_retention_ms
from plumbing.kafka_clients import make_admin
from plumbing.settings import KafkaSettings
from schemas.topics import all_topics
from tests.support.replay_data import kafka_args, run_cli


def test_parse_and_format_retention() -> None:
    assert parse_retention_ms("30d") == 30 * 86_400_000
    assert parse_retention_ms("12h") == 12 * 3_600_000
    assert parse_retention_ms("infinite") == parse_retention_ms("-1") == -1
    assert format_retention(-1) == "infinite"
    assert format_retention(30 * 86_400_000) == "30d"
    assert format_retention(14 * 86_400_000) == "2w"
    for bad in ("30", "soon", "0s"):
        with pytest.raises(ReplayError):
            parse_retention_ms(bad)


async def _describe(settings: KafkaSettings, names: list[str]) -> dict[str, tuple[int, str]]:
    admin = make_admin(settings)
    await admin.start()
    try:
        parts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        out = {}
        for resp in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names]):
            for res in resp.resources:
                conf = {e[0]: e[1] for e in res[4]}
                out[res[3]] = (parts[res[3]], conf["retention.ms"])
        return out
    finally:
        await admin.close()


@pytest.mark.kafka
def test_topics_create_with_retention_and_partitions_then_list(
    kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = kafka_settings
    names = all_topics(s.topic_prefix)
    assert run_cli("topics", "list", *kafka_args(s)) == 0
    assert capsys.readouterr().out.count("(missing)") == len(names)

    assert run_cli("topics", "create", "--retention", "30d", "--partitions", "2", *kafka_args(s)) == 0
    out = capsys.readouterr().out
    assert out.count("created ") == len(names) and "retention 30d" in out
    described = asyncio.run(_describe(s, names))
    assert described == {n: (2, str(30 * 86_400_000)) for n in names}

    # again: nothing to create, existing topics untouched
    assert run_cli("topics", "create", "--retention", "infinite", *kafka_args(s)) == 0
    assert capsys.readouterr().out.count("exists ") == len(names)
    assert asyncio.run(_describe(s, names)) == described

    assert run_cli("topics", "list", *kafka_args(s)) == 0
    listing = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in listing[1:]}
    assert rows == {n: ["2", "1", "1", "30d", "0"] for n in names}  # partitions, replicas, min ISR (one broker)


@pytest.mark.kafka
def test_topics_create_infinite_retention(kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]) -> None:
    s = kafka_settings
    assert run_cli("topics", "create", "--retention", "infinite", *kafka_args(s)) == 0
    assert "retention infinite" in capsys.readouterr().out
    described = asyncio.run(_describe(s, all_topics(s.topic_prefix)))
    assert {v for v in described.values()} == {(s.topic_partitions, "-1")}
