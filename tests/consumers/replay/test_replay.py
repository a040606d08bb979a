"""`tpipe replay` against a real broker: exact window selection per VIN in per-VIN order, dry-run
counts, the topic target, no consumer group, bounded reads."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from consumers.replay.kafka_source import KafkaSource
from consumers.replay.selection import Selection
from plumbing.kafka_clients import make_admin, make_producer
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.topics import headers_for, key_for, topic_for
from tests.support.events import iso
from tests.support.kafka_broker import broker_settings, read_all
from tests.support.replay_data import MIN, VINS, History, kafka_args, make_history, run_cli

pytestmark = pytest.mark.kafka

TYPES = {"data", "state"}
CHOSEN = {VINS[0], VINS[2]}


@pytest.fixture(scope="module")
def hist_settings(kafka_bootstrap: str) -> KafkaSettings:
    return broker_settings(kafka_bootstrap, topic_prefix=f"r{uuid.uuid4().hex[:8]}", topic_partitions=3)


@pytest.fixture(scope="module")
def history(hist_settings: KafkaSettings) -> History:
    return make_history(hist_settings)


@pytest.fixture(scope="module")
def window(history: History) -> Iterator[tuple[int, int]]:
    yield history.base_ms + 60 * MIN, history.base_ms + 120 * MIN


def _selection_args(window: tuple[int, int]) -> list[str]:
    return ["--types", "data,state", "--from", iso(window[0]), "--to", iso(window[1]),
            "--vin", VINS[0], "--vin", VINS[2], "--slack", "45m"]


def _assert_same_events(got: list[Envelope], expected: list[Envelope]) -> None:
    assert len(got) == len(expected), (len(got), len(expected))
    assert {e.event_id for e in got} == {e.event_id for e in expected}
    # per VIN and type (one partition): exactly the production order
    def by_lane(envs: list[Envelope]) -> dict[tuple[str | None, str], list[str]]:
        lanes: dict[tuple[str | None, str], list[str]] = defaultdict(list)
        for e in envs:
            lanes[(e.vin, e.type)].append(e.event_id)
        return lanes

    assert by_lane(got) == by_lane(expected)


def test_replay_window_to_file_exact_per_vin_order(
    history: History, hist_settings: KafkaSettings, window: tuple[int, int], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = history.select(TYPES, CHOSEN, *window)
    assert history.late[0] in expected  # arrives 30 min late, inside the slack: must be found
    assert any(e.created_at_ms == window[0] for e in expected)  # start included
    groups_before = asyncio.run(_groups(hist_settings))

    out = tmp_path / "out.jsonl"
    rc = run_cli("replay", *_selection_args(window), "--to-file", str(out), *kafka_args(hist_settings))
    assert rc == 0
    got = [Envelope.from_json(line) for line in out.read_bytes().splitlines()]
    _assert_same_events(got, expected)
    assert all(window[0] <= e.created_at_ms < window[1] for e in got)
    assert not any(e.created_at_ms == window[1] for e in got)  # end excluded
    # across a VIN's topics the output is merged by event time (the late event aside)
    for vin in CHOSEN:
        times = [e.created_at_ms for e in got if e.vin == vin and e not in history.late]
        assert times == sorted(times)
    err = capsys.readouterr().err
    assert f"replayed {len(expected)} events" in err
    assert "\r" not in err  # stderr is not a terminal: no progress bar
    # no consumer group was created or used
    assert asyncio.run(_groups(hist_settings)) == groups_before


def test_dry_run_count_matches_real_run(
    history: History, hist_settings: KafkaSettings, window: tuple[int, int], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = history.select(TYPES, CHOSEN, *window)
    copies = history.copies(TYPES, CHOSEN, *window)
    assert copies > 0  # the window holds redelivered webhooks
    rc = run_cli("replay", *_selection_args(window), "--dry-run", *kafka_args(hist_settings))
    assert rc == 0
    report = capsys.readouterr().out
    assert "DRY RUN" in report and "reading every range" in report
    count = int(re.search(r"matching events: (\d+)", report).group(1))  # type: ignore[union-attr]
    assert f"({copies} redelivered copies left out; {count + copies} records in the window)" in report
    rows = [ln.split() for ln in report.splitlines() if ln.startswith(topic_for("", hist_settings.topic_prefix))]
    assert {r[0] for r in rows} == {topic_for(t, hist_settings.topic_prefix) for t in TYPES}
    assert len(rows) == 2 * hist_settings.topic_partitions
    assert sum(int(r[-2]) for r in rows) == count  # per-partition counts add up (events, then duplicates)
    assert sum(int(r[-1]) for r in rows) == copies
    for r in rows:
        start, end = int(r[2]), int(r[3])
        assert 0 <= start <= end

    # the same plan as data (what the operator console shows)
    assert run_cli("replay", *_selection_args(window), "--dry-run", "--format", "json",
                   *kafka_args(hist_settings)) == 0
    plan = orjson.loads(capsys.readouterr().out)
    assert (plan["events"], plan["duplicates"], plan["records_in_window"]) == (count, copies, count + copies)
    assert plan["dry_run"] is True and sum(r["events"] for r in plan["ranges"]) == count

    out = tmp_path / "real.jsonl"
    assert run_cli("replay", *_selection_args(window), "--to-file", str(out), "--progress",
                   *kafka_args(hist_settings)) == 0
    lines = out.read_bytes().splitlines()
    real = len(lines)
    assert count == real == len(expected)
    assert len({Envelope.from_json(x).event_id for x in lines}) == real  # each event once
    err = capsys.readouterr().err
    bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)  # --progress forces the bar without a terminal
    assert "replay" in bar and "100%" in bar and f"{real} events" in bar
    assert f"replayed {real} events" in err and f"left out {copies} redelivered copies" in err

    # all VINs, all types, no --from: the whole history up to --to
    rc = run_cli("replay", "--to", iso(window[1]), "--dry-run", *kafka_args(hist_settings))
    assert rc == 0
    report = capsys.readouterr().out
    count_all = int(re.search(r"matching events: (\d+)", report).group(1))  # type: ignore[union-attr]
    assert count_all == len({e.event_id for e in history.envelopes if e.created_at_ms < window[1]})


def test_replay_to_topic_keeps_key_headers_timestamp(
    history: History, hist_settings: KafkaSettings, window: tuple[int, int]
) -> None:
    expected = history.select(TYPES, CHOSEN, *window)
    target = f"{hist_settings.topic_prefix}.replayed"
    rc = run_cli("replay", *_selection_args(window), "--to-topic", target, *kafka_args(hist_settings))
    assert rc == 0
    recs = asyncio.run(read_all(hist_settings, target, expected_count=len(expected), timeout=30))
    recs.sort(key=lambda r: (r.partition, r.offset))
    # one VIN's records share one partition of the target: its order there is the replay's order
    _assert_same_events([Envelope.from_json(r.value) for r in recs], expected)
    by_id = {e.event_id: e for e in expected}
    for r in recs:
        env = by_id[Envelope.from_json(r.value).event_id]
        assert r.value == env.to_json()
        assert r.key == key_for(env)
        assert list(r.headers) == headers_for(env)
        assert r.timestamp == env.created_at_ms


def test_reads_stop_at_end_offsets_captured_at_start(history: History, hist_settings: KafkaSettings) -> None:
    """Events produced after the replay started are not read: a replay always ends."""
    vin = VINS[3]
    sel = Selection.build(types=["data"], from_ms=history.base_ms, vins=[vin], slack_ms=0)

    async def scenario() -> tuple[int, int]:
        async with KafkaSource(hist_settings, sel) as src:
            await src.plan()
            extra = Envelope.from_dict({**orjson.loads(history.envelopes[-1].to_json()),
                                        "event_id": uuid.uuid4().hex, "vin": vin})
            producer = make_producer(hist_settings)
            await producer.start()
            try:
                await (await producer.send(topic_for("data", hist_settings.topic_prefix), extra.to_json(),
                                           key=key_for(extra), headers=headers_for(extra),
                                           timestamp_ms=extra.created_at_ms))
            finally:
                await producer.stop()
            n = 0
            async for _ in src.events():
                n += 1
            return n, len({e.event_id for e in history.envelopes if e.type == "data" and e.vin == vin})

    got, before = asyncio.run(scenario())
    assert got == before


def test_errors_are_reported_not_raised(hist_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("replay", "--types", "nope", "--dry-run", *kafka_args(hist_settings)) == 1
    assert "unknown event type 'nope'" in capsys.readouterr().err
    assert run_cli("replay", "--from", "1h", *kafka_args(hist_settings)) == 1
    assert "choose a target" in capsys.readouterr().err
    assert run_cli("replay", "--from", "yesterday-ish", "--dry-run", *kafka_args(hist_settings)) == 1
    assert "not a time" in capsys.readouterr().err
    assert run_cli("replay", "--from", "1h", "--to", "2h", "--dry-run", *kafka_args(hist_settings)) == 1
    assert "--from must be earlier" in capsys.readouterr().err


async def _groups(settings: KafkaSettings) -> set[str]:
    admin = make_admin(settings)
    await admin.start()
    try:
        return {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()
