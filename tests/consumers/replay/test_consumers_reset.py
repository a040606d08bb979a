"""`tpipe consumers reset`: moves a stopped group to the first offset at or after T per partition,
only with --execute; refuses for an active group and for the lake worker's group."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.structs import TopicPartition

from consumers.replay.reset import reset_group
from consumers.replay.selection import ReplayError
from plumbing.kafka_clients import make_admin, make_consumer
from plumbing.settings import KafkaSettings
from schemas.topics import topic_for
from tests.support.events import iso
from tests.support.kafka_broker import read_all
from tests.support.replay_data import MIN, History, kafka_args, make_history, run_cli

pytestmark = pytest.mark.kafka


async def _committed(settings: KafkaSettings, group: str) -> dict[TopicPartition, int]:
    admin = make_admin(settings)
    await admin.start()
    try:
        return {tp: m.offset for tp, m in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


async def _commit(settings: KafkaSettings, group: str, offsets: dict[TopicPartition, int]) -> None:
    c = make_consumer(settings, group_id=group)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(offsets)
    finally:
        await c.stop()


async def _first_offsets_at(settings: KafkaSettings, topic: str, n: int, ts: int) -> dict[TopicPartition, int]:
    """Independent of offsets_for_times: the first offset per partition with timestamp >= ts."""
    recs = await read_all(settings, topic, expected_count=n)
    assert len(recs) == n
    out: dict[TopicPartition, int] = {}
    ends = {TopicPartition(topic, p): 0 for p in range(settings.topic_partitions)}  # empty partitions too
    for r in sorted(recs, key=lambda r: (r.partition, r.offset)):
        tp = TopicPartition(r.topic, r.partition)
        ends[tp] = r.offset + 1
        if r.timestamp >= ts and tp not in out:
            out[tp] = r.offset
    return {tp: out.get(tp, ends[tp]) for tp in ends}


@pytest.fixture
def history(kafka_settings: KafkaSettings) -> History:
    return make_history(kafka_settings)


def test_reset_stopped_group_dry_run_then_execute(
    kafka_settings: KafkaSettings, history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    s = kafka_settings
    topic = topic_for("data", s.topic_prefix)
    n_data = sum(1 for e in history.envelopes if e.type == "data")
    target = history.base_ms + 95 * MIN + 30_000
    expected = asyncio.run(_first_offsets_at(s, topic, n_data, target))
    assert len(expected) == s.topic_partitions
    group = f"{s.topic_prefix}.alerts"
    caught_up = {tp: off + 10_000 for tp, off in expected.items()}  # anything but the answer
    asyncio.run(_commit(s, group, caught_up))

    assert run_cli("consumers", "reset", "--group", group, "--to", iso(target), *kafka_args(s)) == 0
    plan = capsys.readouterr().out
    assert "DRY RUN" in plan
    rows = {(ln.split()[0], int(ln.split()[1])): ln.split()[2:] for ln in plan.splitlines() if ln.startswith(topic)}
    assert rows == {(tp.topic, tp.partition): [str(caught_up[tp]), str(expected[tp])] for tp in expected}
    assert asyncio.run(_committed(s, group)) == caught_up  # a dry run changes nothing

    rc = run_cli("consumers", "reset", "--group", group, "--to", iso(target), "--execute", *kafka_args(s))
    assert rc == 0
    assert "RESET" in capsys.readouterr().out
    assert asyncio.run(_committed(s, group)) == expected

    # relative time / earliest / latest; --topic names partitions the group has no offsets for
    rows2 = asyncio.run(reset_group(s, group, "earliest", topics=[topic_for("state", s.topic_prefix)], execute=True))
    assert {r.new for r in rows2} == {0} and all(r.current is None for r in rows2)
    assert run_cli("consumers", "reset", "--group", group, "--to", "latest", "--execute", *kafka_args(s)) == 0
    ends = asyncio.run(_first_offsets_at(s, topic, n_data, 2**62))  # no record that late: the end offsets
    assert {tp: o for tp, o in asyncio.run(_committed(s, group)).items() if tp.topic == topic} == ends
    # a relative time after every record: also the end offsets (nothing at or after it)
    assert run_cli("consumers", "reset", "--group", group, "--to", "1m", "--topic", topic, "--execute",
                   *kafka_args(s)) == 0
    assert {tp: o for tp, o in asyncio.run(_committed(s, group)).items() if tp.topic == topic} == ends


def test_reset_refuses_active_group(kafka_settings: KafkaSettings, history: History) -> None:
    s = kafka_settings
    topic = topic_for("data", s.topic_prefix)
    group = f"{s.topic_prefix}.credits"

    async def scenario() -> tuple[int, str, dict[TopicPartition, int], dict[TopicPartition, int]]:
        member = make_consumer(s, topic, group_id=group)
        await member.start()
        try:
            deadline = time.monotonic() + 30
            while not member.assignment():
                assert time.monotonic() < deadline, "consumer never joined its group"
                await member.getmany(timeout_ms=200)
            await member.commit({tp: 1 for tp in member.assignment()})
            before = await _committed(s, group)
            with pytest.raises(ReplayError, match="is active"):
                await reset_group(s, group, "earliest", execute=True)
            errs: list[str] = []

            def cli() -> int:
                import contextlib
                import io

                buf = io.StringIO()
                with contextlib.redirect_stderr(buf):
                    rc = run_cli("consumers", "reset", "--group", group, "--to", "earliest", "--execute",
                                 *kafka_args(s))
                errs.append(buf.getvalue())
                return rc

            rc = await asyncio.to_thread(cli)
            return rc, errs[0], before, await _committed(s, group)
        finally:
            await member.stop()

    rc, err, before, after = asyncio.run(scenario())
    assert rc == 1
    assert "is active" in err and "Stop its worker" in err
    assert after == before


def test_reset_refuses_lake_group_and_unknown_offsets(
    kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = kafka_settings
    rc = run_cli("consumers", "reset", "--group", f"{s.topic_prefix}.telemetry", "--to", "1h", "--execute",
                 *kafka_args(s))
    assert rc == 1
    err = capsys.readouterr().err
    assert "Iceberg" in err and "tpipe lake replay" in err
    rc = run_cli("consumers", "reset", "--group", f"{s.topic_prefix}.nobody", "--to", "1h", *kafka_args(s))
    assert rc == 1
    assert "no committed offsets" in capsys.readouterr().err
