"""`tpipe lake replay`: history rebuilt from the Iceberg tables (written by the telemetry worker's
own code path) matches a Kafka replay of the same window, redelivered webhooks in the stream included:
both give each event once, in the same order."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from pathlib import Path

import pytest

from consumers.lake.settings import LakeSettings
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from tests.support.events import iso
from tests.support.lake import LAKE_TYPES, fill_lake, lake_cli
from tests.support.replay_data import MIN, VINS, History, kafka_args, make_history, run_cli

pytestmark = pytest.mark.kafka


def _lanes(envs: list[Envelope]) -> dict[tuple[str | None, str], list[str]]:
    out: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for e in envs:
        out[(e.vin, e.type)].append(e.event_id)
    return out


def test_lake_replay_matches_kafka_replay(
    kafka_settings: KafkaSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history: History = make_history(kafka_settings)
    lake = LakeSettings(
        **kafka_settings.model_dump(), catalog_uri=f"sqlite:///{tmp_path}/catalog.db",
        warehouse=str(tmp_path / "warehouse"), commit_interval_s=0.3, metrics_port=0,
    )
    asyncio.run(fill_lake(lake))
    lake_args = ["--catalog-uri", lake.catalog_uri, "--warehouse", lake.warehouse]

    frm, to = history.base_ms + 40 * MIN, history.base_ms + 125 * MIN
    sel = ["--types", ",".join(LAKE_TYPES), "--from", iso(frm), "--to", iso(to),
           "--vin", VINS[0], "--vin", VINS[3]]
    kafka_out, lake_out = tmp_path / "kafka.jsonl", tmp_path / "lake.jsonl"
    assert run_cli("replay", *sel, "--slack", "1h", "--to-file", str(kafka_out), *kafka_args(kafka_settings)) == 0
    assert lake_cli("replay", *sel, "--to-file", str(lake_out), *lake_args) == 0
    from_kafka = [Envelope.from_json(x) for x in kafka_out.read_bytes().splitlines()]
    from_lake = [Envelope.from_json(x) for x in lake_out.read_bytes().splitlines()]

    expected = history.select(set(LAKE_TYPES), {VINS[0], VINS[3]}, frm, to)
    assert {e.type for e in expected} == set(LAKE_TYPES)  # every lake table takes part
    assert history.copies(set(LAKE_TYPES), {VINS[0], VINS[3]}, frm, to) > 0  # with redeliveries in Kafka
    assert len(from_kafka) == len(expected)
    assert len(from_lake) == len(from_kafka)
    assert _lanes(from_lake) == _lanes(from_kafka)  # same events, same per-VIN order
    assert [e.event_id for e in from_lake] == [e.event_id for e in from_kafka]  # same merged order
    by_id = {e.event_id: e for e in from_kafka}
    for e in from_lake:
        k = by_id[e.event_id]
        assert (e.type, e.vin, e.created_at, e.created_at_ms) == (k.type, k.vin, k.created_at, k.created_at_ms)
        assert e.payload == k.payload  # numbers compare by value (the lake may store 50 as 50.0)

    # dry runs agree with the real runs; types the lake does not keep are named
    capsys.readouterr()
    assert lake_cli("replay", *sel, "--types", "alerts", "--dry-run", *lake_args) == 0
    report = capsys.readouterr().out
    assert "DRY RUN (lake)" in report and "not kept in the lake" in report and "alerts" in report
    assert int(re.search(r"matching events: (\d+)", report).group(1)) == len(from_lake)  # type: ignore[union-attr]
