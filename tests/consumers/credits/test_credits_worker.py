"""``tpipe consume credits`` end to end: real Kafka, the real runtime, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from consumers.credits.settings import CreditsSettings
from consumers.credits.store import CreditStore
from consumers.credits.store import parse_event as parse_credit
from consumers.credits.worker import CreditsWorker
from consumers.sqlstore import make_engine
from localbroker import free_port
from plumbing.settings import KafkaSettings
from schemas.topics import notifications_topic
from tests.support.events import envelopes
from tests.support.kafka_broker import produce_envelopes, read_until_quiet
from tests.support.postgres import db_url, postgres_url  # noqa: F401
from tests.support.processes import tpipe_env
from tests.support.samples.credits import START, credit_events
from tests.support.waiting import wait_until
from tests.support.workers import RunningWorker, handled_total, worker_settings

pytestmark = pytest.mark.kafka

async def test_ledger_exact_through_kafka_with_duplicates_reorder_and_a_crash(
    kafka_settings: KafkaSettings, db_url: str  # noqa: F811
) -> None:
    objs = credit_events(start_ms=START, days=4, per_day=25, balance=1200, seed=21)
    events = envelopes(objs)
    ordered = sorted((parse_credit(e) for e in events), key=lambda e: (e.created_at_ms, e.event_id))
    threshold = ordered[int(len(ordered) * 0.7)].balance + 1  # crossed ~70% into the stream
    rng = random.Random(4)
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    rng.shuffle(first)
    rng.shuffle(second)
    batch1 = first + rng.sample(first, 10)  # redelivered webhooks: same event ids
    batch2 = second + rng.sample(events, 15)

    settings = worker_settings(kafka_settings, CreditsSettings, credits_db_url=db_url, low_balance=threshold)
    engine = make_engine(db_url)
    store = CreditStore(engine)

    def ledger_count() -> int:
        try:
            return store.totals()["events"]
        except Exception:  # tables not created yet
            return 0

    produced = await produce_envelopes(settings, batch1)
    runner = RunningWorker(CreditsWorker(settings), settings).start()
    await runner.assigned()
    rt = runner.runtime
    await wait_until(lambda: ledger_count() == len(first), "first half in the ledger", in_thread=True)
    await wait_until(lambda: handled_total(rt) == produced, what="first half handled")
    await runner.crash()  # no drain: offsets may be behind the database -> redelivery

    produced += await produce_envelopes(settings, batch2)
    async with RunningWorker(CreditsWorker(settings), settings) as rt2:
        await wait_until(lambda: ledger_count() == len(events), "whole stream in the ledger", in_thread=True)
        # all records, including the redelivered ones, went through the worker again
        await wait_until(lambda: handled_total(rt2) == produced, what="every record handled")
        await wait_until(lambda: store.outbox.counts(engine) == {"pending": 0, "done": 1},
                         "the low-balance notification delivered", in_thread=True)

    # A full replay from the beginning (a new consumer group) changes nothing and notifies nobody.
    replay = settings.model_copy(update={"group_id": f"{settings.topic_prefix}.credits-replay"})
    async with RunningWorker(CreditsWorker(replay), replay) as rt3:
        await wait_until(lambda: handled_total(rt3) == produced, what="replay handled")
    assert store.outbox.counts(engine) == {"pending": 0, "done": 1}

    totals = store.totals()
    assert totals == {"events": len(ordered), "cost": sum(e.cost for e in ordered), "snapshots": 1}
    assert store.current()["balance"] == ordered[-1].balance  # type: ignore[index]
    by_day: dict[str, int] = {}
    for e in ordered:
        day = time.strftime("%Y-%m-%d", time.gmtime(e.created_at_ms / 1000))
        by_day[day] = by_day.get(day, 0) + e.cost
    assert {d["day"]: d["cost"] for d in store.usage_by_day()} == by_day

    notes = await read_until_quiet(settings, notifications_topic(settings.topic_prefix), quiet_s=1.0, min_count=1)
    assert len(notes) == 1
    body = orjson.loads(notes[0].value)
    assert body["kind"] == "low_balance" and body["details"]["threshold"] == threshold
    assert body["details"]["balance"] < threshold
    assert notes[0].key == b"account"
    engine.dispose()


async def test_cli_worker_process_drains_on_sigterm_and_serves_metrics(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """``tpipe consume credits`` as a real process: consumes, serves /metrics, exits 0 on SIGTERM."""
    db = f"sqlite:///{tmp_path}/credits.db"
    events = envelopes(credit_events(start_ms=START, days=1, per_day=12, balance=60, seed=2))  # ends < 50
    await produce_envelopes(kafka_settings, events)
    port = free_port()
    env = tpipe_env()
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tpipe.cli", "consume", "credits", "--kafka", kafka_settings.kafka,
             "--topic-prefix", kafka_settings.topic_prefix, "--db-url", db, "--low-balance", "50",
             "--metrics-port", str(port), "--metrics-addr", "127.0.0.1", "--batch-timeout-ms", "200"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    store = CreditStore(make_engine(db))

    def done() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"worker exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return store.totals()["events"] == len(events) and store.outbox.counts(store.engine)["pending"] == 0
        except Exception:
            return False

    try:
        await wait_until(done, "the CLI worker to fill the ledger", in_thread=True)

        async def metrics_ok() -> bool:
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
            return 'tpipe_worker_records_processed_total{worker="credits"} ' + f"{len(events)}.0" in text

        await wait_until(metrics_ok, what="processed count on /metrics")
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, log_path.read_text()[-3000:]
    assert store.totals()["cost"] == sum(parse_credit(e).cost for e in events)
    assert store.outbox.counts(store.engine) == {"pending": 0, "done": 1}  # the balance fell below 50
    store.engine.dispose()
