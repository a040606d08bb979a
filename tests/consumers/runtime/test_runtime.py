"""The worker runtime against a real broker: delivery, commits, DLQ, retries, drain, rebalance.

Also holds the small helpers the lake tests share (envelopes, producing, polling).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
import pytest
from aiokafka.structs import TopicPartition

from consumers.runtime import (
    DLQ_HEADERS,
    Failure,
    RetryableError,
    Worker,
    WorkerRecord,
    WorkerRuntime,
    WorkerSettings,
    header_map,
)
from plumbing.kafka_clients import make_admin, make_producer
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.parse import parse_body
from schemas.topics import dlq_topic, headers_for, key_for, topic_for
from tests.support.kafka_broker import read_all

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# --- shared helpers -------------------------------------------------------------------------------
def iso(ms: int) -> str:
    from schemas.times import ms_to_iso

    return ms_to_iso(ms)


def event(obj: dict[str, Any], received_at_ms: int = BASE_MS + 86_400_000) -> Envelope:
    """One Teslemetry-format event object -> its Envelope (through the real parser)."""
    envs = parse_body(orjson.dumps(obj), received_at_ms=received_at_ms)
    assert len(envs) == 1, envs
    return envs[0]


def data_event(vin: str, ms: int, data: dict[str, Any]) -> Envelope:
    return event({"createdAt": iso(ms), "vin": vin, "data": data})


def state_event(vin: str, ms: int, state: str) -> Envelope:
    return event({"createdAt": iso(ms), "vin": vin, "state": state})


async def produce_envelopes(settings: KafkaSettings, envs: Iterable[Envelope]) -> int:
    """Publish like the forwarder does: topic_for / key_for / headers_for / to_json, ts = created_at_ms."""
    producer = make_producer(settings, role="test-envelopes")
    await producer.start()
    try:
        futs = [
            await producer.send(
                topic_for(e.type, settings.topic_prefix), value=e.to_json(), key=key_for(e),
                headers=headers_for(e), timestamp_ms=e.created_at_ms,
            )
            for e in envs
        ]
        await asyncio.gather(*futs)
        return len(futs)
    finally:
        await producer.stop()


async def produce_raw(settings: KafkaSettings, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> None:
    producer = make_producer(settings, role="test-raw")
    await producer.start()
    try:
        futs = [await producer.send(topic, value=v, key=k) for k, v in items]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def wait_for(cond: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 30.0,
                   interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``cond`` until truthy (returns its value) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        res = cond()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return res
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def committed_offsets(settings: KafkaSettings, group: str) -> dict[TopicPartition, int]:
    admin = make_admin(settings)
    await admin.start()
    try:
        res = await admin.list_consumer_group_offsets(group)
        return {tp: om.offset for tp, om in res.items() if om.offset >= 0}
    finally:
        await admin.close()


async def end_offsets(settings: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    from plumbing.kafka_clients import make_consumer

    c = make_consumer(settings, group_id=None, role="test-ends", metadata_max_age_ms=500)
    await c.start()
    try:
        async def parts_known() -> Any:
            await c.topics()  # refreshes metadata
            return c.partitions_for_topic(topic)

        parts = await wait_for(parts_known, what=f"metadata of {topic}")
        return dict(await c.end_offsets([TopicPartition(topic, p) for p in parts]))
    finally:
        await c.stop()


def worker_settings(kafka_settings: KafkaSettings, cls: type[WorkerSettings] = WorkerSettings,
                    **fields: Any) -> Any:
    base = kafka_settings.model_dump()
    base.update(batch_timeout_ms=200, batch_size=50, retry_backoff_ms=50, metrics_port=0)
    base.update(fields)
    return cls(**base)


class Running:
    """A runtime in a task; ``await r.stop()`` drains and re-raises what ``run`` raised."""

    def __init__(self, worker: Worker, settings: WorkerSettings) -> None:
        self.stop_event = asyncio.Event()
        self.runtime = WorkerRuntime(worker, settings, stop=self.stop_event)
        self.task = asyncio.create_task(self.runtime.run())

    async def assigned(self, timeout: float = 30.0) -> None:
        waiter = asyncio.ensure_future(self.runtime.assigned_event.wait())
        done, _ = await asyncio.wait({waiter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            waiter.cancel()
            self.task.result()
            raise AssertionError("runtime ended before its assignment")
        if waiter not in done:
            waiter.cancel()
            raise AssertionError("no partition assignment in time")

    async def stop(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, timeout)


# --- a worker that records its effects --------------------------------------------------------------
class Recorder(Worker):
    """Effect = event_id in a set (idempotent); also counts deliveries."""

    name = "recorder"
    event_types = ("state",)

    def __init__(self, *, poison: set[str] = frozenset(), reject: set[str] = frozenset(),  # type: ignore[assignment]
                 retry_first: int = 0) -> None:
        self.applied: set[str] = set()
        self.deliveries: dict[str, int] = {}
        self.poison, self.reject = set(poison), set(reject)
        self.retry_first = retry_first
        self.calls = 0
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def handle(self, batch: list[WorkerRecord]) -> list[Failure]:
        self.calls += 1
        if self.retry_first > 0:
            self.retry_first -= 1
            raise RetryableError("database is down")
        failures = []
        for rec in batch:
            if rec.event_id in self.poison:
                raise ValueError(f"cannot process {rec.event_id}")
        for rec in batch:
            self.deliveries[rec.event_id] = self.deliveries.get(rec.event_id, 0) + 1
            if rec.event_id in self.reject:
                failures.append(Failure(rec, "rejected by test", "TestReject"))
                continue
            self.applied.add(rec.event_id)
        return failures

    async def stop(self) -> None:
        self.stopped = True


def states(n: int, vin_count: int = 4, start: int = 0) -> list[Envelope]:
    return [state_event(f"VIN{i % vin_count:014d}", BASE_MS + i * 1000, "online") for i in range(start, start + n)]


# --- tests ------------------------------------------------------------------------------------------
pytestmark = pytest.mark.kafka


async def test_delivers_commits_and_drains(kafka_settings: KafkaSettings) -> None:
    envs = states(40)
    await produce_envelopes(kafka_settings, envs)
    worker = Recorder()
    s = worker_settings(kafka_settings)
    r = Running(worker, s)
    await r.assigned()
    await wait_for(lambda: len(worker.applied) == 40, what="40 events applied")
    await r.stop()
    assert worker.started and worker.stopped
    assert worker.applied == {e.event_id for e in envs}
    topic = topic_for("state", s.topic_prefix)
    assert await committed_offsets(s, f"{s.topic_prefix}.recorder") == await end_offsets(s, topic)


async def test_restart_resumes_from_committed_offsets(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    await produce_envelopes(s, states(10))
    first = Recorder()
    r = Running(first, s)
    await wait_for(lambda: len(first.applied) == 10, what="first 10")
    await r.stop()
    await produce_envelopes(s, states(5, start=10))
    second = Recorder()
    r = Running(second, s)
    await wait_for(lambda: len(second.applied) == 5, what="the 5 new events")
    await r.stop()
    assert second.applied == {e.event_id for e in states(5, start=10)}


async def test_poison_records_are_dead_lettered_and_the_worker_carries_on(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    topic = topic_for("state", s.topic_prefix)
    good = states(6)
    bad_env, rejected = state_event("VIN00000000000099", BASE_MS, "offline"), good[2]
    worker = Recorder(poison={bad_env.event_id}, reject={rejected.event_id})
    await produce_envelopes(s, good[:3])
    await produce_raw(s, topic, [(b"VIN00000000000001", b"\x00not json at all")])
    await produce_envelopes(s, [bad_env, *good[3:]])
    r = Running(worker, s)
    await wait_for(lambda: len(worker.applied) == 5, what="the good events")
    dlq = await read_all(s, dlq_topic(s.topic_prefix), expected_count=3, timeout=30)
    await r.stop()
    assert worker.applied == {e.event_id for e in good} - {rejected.event_id}
    assert len(dlq) == 3
    by_type = {header_map(rec.headers)["dlq_error_type"]: rec for rec in dlq}
    assert set(by_type) == {"DecodeError", "ValueError", "TestReject"}
    raw = by_type["DecodeError"]
    h = header_map(raw.headers)
    assert raw.value == b"\x00not json at all" and raw.key == b"VIN00000000000001"
    assert set(DLQ_HEADERS) <= set(h)
    assert h["dlq_source_topic"] == topic and h["dlq_worker"] == "recorder"
    assert int(h["dlq_source_offset"]) >= 0 and int(h["dlq_source_partition"]) in (0, 1, 2)
    assert "not an envelope" in h["dlq_error"]
    poison = by_type["ValueError"]
    assert poison.value == bad_env.to_json()
    assert bad_env.event_id in header_map(poison.headers)["dlq_error"]
    assert header_map(poison.headers)["event_id"] == bad_env.event_id  # original headers kept
    assert await committed_offsets(s, f"{s.topic_prefix}.recorder") == await end_offsets(s, topic)


async def test_retryable_errors_back_off_and_retry_without_dlq(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    envs = states(5)
    await produce_envelopes(s, envs)
    worker = Recorder(retry_first=3)
    r = Running(worker, s)
    await wait_for(lambda: len(worker.applied) == 5, what="events after retries")
    await r.stop()
    assert worker.calls >= 4
    assert await read_all(s, dlq_topic(s.topic_prefix), expected_count=1, timeout=1.5) == []


async def test_duplicate_event_ids_do_not_double_the_effect(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    envs = states(5)
    await produce_envelopes(s, [*envs, envs[0], envs[3]])  # redelivered webhooks
    worker = Recorder()
    r = Running(worker, s)
    await wait_for(lambda: sum(worker.deliveries.values()) == 7, what="7 deliveries")
    await r.stop()
    assert worker.applied == {e.event_id for e in envs}


async def test_rebalance_two_workers_one_group(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    a, b = Recorder(), Recorder()
    ra = Running(a, s)
    await ra.assigned()
    assert len(ra.runtime.assignment) == 3
    await produce_envelopes(s, states(30))
    await wait_for(lambda: len(a.applied) == 30, what="first 30 on worker A")
    rb = Running(b, s)
    await wait_for(
        lambda: ra.runtime.assignment and rb.runtime.assignment
        and len(ra.runtime.assignment | rb.runtime.assignment) == 3,
        timeout=60, what="both workers own partitions",
    )
    assert not (ra.runtime.assignment & rb.runtime.assignment)
    later = states(30, start=30)
    await produce_envelopes(s, later)
    await wait_for(lambda: len(a.applied | b.applied) == 60, timeout=60, what="all 60 applied")
    await rb.stop()
    await ra.stop()
    assert (a.applied | b.applied) == {e.event_id for e in states(60)}
    assert b.applied and b.applied <= {e.event_id for e in later}  # B never re-read what A committed
    assert await committed_offsets(s, f"{s.topic_prefix}.recorder") == await end_offsets(
        s, topic_for("state", s.topic_prefix)
    )


async def test_metrics_are_recorded(kafka_settings: KafkaSettings) -> None:
    from plumbing import metrics

    s = worker_settings(kafka_settings)
    name = f"rec{s.topic_prefix}"

    class Named(Recorder):
        pass

    Named.name = name
    worker = Named(reject={states(3)[1].event_id})
    await produce_envelopes(s, states(3))
    r = Running(worker, s)
    await wait_for(lambda: len(worker.applied) == 2, what="2 applied")
    await wait_for(lambda: metrics.REGISTRY.get_sample_value("tpipe_worker_dlq_total", {"worker": name}) == 1,
                   what="dlq metric")
    await r.stop()
    get = metrics.REGISTRY.get_sample_value
    assert get("tpipe_worker_records_processed_total", {"worker": name}) == 2
    assert get("tpipe_worker_records_failed_total", {"worker": name}) == 1
    assert (get("tpipe_worker_commit_seconds_count", {"worker": name}) or 0) >= 1
