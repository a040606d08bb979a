"""``tpipe consume credits`` end to end: real Kafka, the real runtime, SQLite and PostgreSQL.

Helpers ``produce_envelopes``, ``RunningWorker`` and ``wait_until`` are reused by the alerts tests.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers.credits.settings import CreditsSettings
from consumers.credits.store import CreditStore
from consumers.credits.store import parse_event as parse_credit
from consumers.credits.worker import CreditsWorker
from consumers.runtime import Worker, WorkerRuntime
from consumers.sqlstore import make_engine
from plumbing.kafka_clients import ensure_topics, make_producer
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.parse import parse_object
from schemas.times import to_ms
from schemas.topics import headers_for, key_for, notifications_topic, topic_for
from tests.support.kafka_broker import read_until_quiet
from tests.support.postgres import db_url, postgres_url  # noqa: F401
from tests.support.samples.credits import credit_events

pytestmark = pytest.mark.kafka

DAY = 86_400_000
START = to_ms("2026-04-01T00:00:00Z") or 0


def envelopes(objs: Sequence[dict[str, Any]], received_at_ms: int = START + 30 * DAY) -> list[Envelope]:
    return [env for o in objs for env in parse_object(o, received_at_ms=received_at_ms)]


async def produce_envelopes(settings: KafkaSettings, envs: Sequence[Envelope]) -> int:
    """Publish like the forwarder does: topic per type, key, headers, value = envelope JSON."""
    topics = sorted({topic_for(e.type, settings.topic_prefix) for e in envs})
    await ensure_topics(settings, topics)
    producer = make_producer(settings, role="test-producer")
    await producer.start()
    try:
        futs = [
            await producer.send(
                topic_for(e.type, settings.topic_prefix), value=e.to_json(), key=key_for(e),
                headers=headers_for(e), timestamp_ms=e.created_at_ms,
            )
            for e in envs
        ]
        await producer.flush()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return len(envs)


async def wait_until(pred: Callable[[], Awaitable[bool] | bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll ``pred`` (sync ones run in a thread: they query databases) until true or fail."""
    deadline = time.monotonic() + timeout
    while True:
        if asyncio.iscoroutinefunction(pred):
            ok = await pred()
        else:
            ok = await asyncio.to_thread(pred)
        if ok:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


class RunningWorker:
    """A worker in the real runtime, as a task: ``async with RunningWorker(w, s) as rt: ...``.
    Leaving the block drains (forced checkpoint + commit); ``crash()`` cancels without draining."""

    def __init__(self, worker: Worker, settings: Any) -> None:
        self.stop = asyncio.Event()
        self.rt = WorkerRuntime(worker, settings, stop=self.stop)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WorkerRuntime:
        self.task = asyncio.create_task(self.rt.run())
        done, _ = await asyncio.wait({self.task, asyncio.create_task(self.rt.assigned_event.wait())},
                                     timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            self.task.result()  # raises the startup error
        if not self.rt.assigned_event.is_set():
            pytest.fail("worker did not get its partitions within 60s")
        return self.rt

    async def crash(self) -> None:
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        self.task = None

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.stop.set()
            await asyncio.wait_for(self.task, 60)


def worker_settings(cls: type[Any], kafka_settings: KafkaSettings, **kw: Any) -> Any:
    base = kafka_settings.model_dump()
    base.update(metrics_port=0, batch_timeout_ms=200, batch_size=40, notify_poll_interval_s=0.2,
                retry_backoff_ms=100)
    base.update(kw)
    return cls(**base)


def handled_total(rt: WorkerRuntime) -> int:
    return sum(rt.handled.values())


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

    settings = worker_settings(CreditsSettings, kafka_settings, credits_db_url=db_url, low_balance=threshold)
    engine = make_engine(db_url)
    store = CreditStore(engine)

    def ledger_count() -> int:
        try:
            return store.totals()["events"]
        except Exception:  # tables not created yet
            return 0

    produced = await produce_envelopes(settings, batch1)
    runner = RunningWorker(CreditsWorker(settings), settings)
    rt = await runner.__aenter__()
    await wait_until(lambda: ledger_count() == len(first), what="first half in the ledger")
    await wait_until(lambda: handled_total(rt) == produced, what="first half handled")
    await runner.crash()  # no drain: offsets may be behind the database -> redelivery

    produced += await produce_envelopes(settings, batch2)
    async with RunningWorker(CreditsWorker(settings), settings) as rt2:
        await wait_until(lambda: ledger_count() == len(events), what="whole stream in the ledger")
        # all records, including the redelivered ones, went through the worker again
        await wait_until(lambda: handled_total(rt2) == produced, what="every record handled")
        await wait_until(lambda: store.outbox.counts(engine)["pending"] == 0 and store.outbox.counts(engine)["done"] == 1,
                         what="the low-balance notification delivered")

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
    import httpx

    from localbroker import free_port

    db = f"sqlite:///{tmp_path}/credits.db"
    events = envelopes(credit_events(start_ms=START, days=1, per_day=12, balance=60, seed=2))  # ends < 50
    await produce_envelopes(kafka_settings, events)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
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
        await wait_until(done, what="the CLI worker to fill the ledger")

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
