"""The worker runtime against a real broker: delivery, commits, DLQ, retries, drain, rebalance."""

from __future__ import annotations

import pytest

from consumers.runtime import (
    DLQ_HEADERS,
    Failure,
    RetryableError,
    Worker,
    WorkerRecord,
    header_map,
)
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.topics import dlq_topic, topic_for
from tests.support.events import BASE_MS, state_event
from tests.support.kafka_broker import committed_offsets, end_offsets, produce, produce_envelopes, read_all
from tests.support.waiting import wait_until
from tests.support.workers import RunningWorker, worker_settings


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
    r = RunningWorker(worker, s).start()
    await r.assigned()
    await wait_until(lambda: len(worker.applied) == 40, what="40 events applied")
    await r.stop()
    assert worker.started and worker.stopped
    assert worker.applied == {e.event_id for e in envs}
    topic = topic_for("state", s.topic_prefix)
    assert await committed_offsets(s, f"{s.topic_prefix}.recorder") == await end_offsets(s, topic)


async def test_restart_resumes_from_committed_offsets(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    await produce_envelopes(s, states(10))
    first = Recorder()
    r = RunningWorker(first, s).start()
    await wait_until(lambda: len(first.applied) == 10, what="first 10")
    await r.stop()
    await produce_envelopes(s, states(5, start=10))
    second = Recorder()
    r = RunningWorker(second, s).start()
    await wait_until(lambda: len(second.applied) == 5, what="the 5 new events")
    await r.stop()
    assert second.applied == {e.event_id for e in states(5, start=10)}


async def test_poison_records_are_dead_lettered_and_the_worker_carries_on(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    topic = topic_for("state", s.topic_prefix)
    good = states(6)
    bad_env, rejected = state_event("VIN00000000000099", BASE_MS, "offline"), good[2]
    worker = Recorder(poison={bad_env.event_id}, reject={rejected.event_id})
    await produce_envelopes(s, good[:3])
    await produce(s, topic, [(b"VIN00000000000001", b"\x00not json at all")])
    await produce_envelopes(s, [bad_env, *good[3:]])
    r = RunningWorker(worker, s).start()
    await wait_until(lambda: len(worker.applied) == 5, what="the good events")
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
    r = RunningWorker(worker, s).start()
    await wait_until(lambda: len(worker.applied) == 5, what="events after retries")
    await r.stop()
    assert worker.calls >= 4
    assert await read_all(s, dlq_topic(s.topic_prefix), expected_count=1, timeout=1.5) == []


async def test_duplicate_event_ids_do_not_double_the_effect(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    envs = states(5)
    await produce_envelopes(s, [*envs, envs[0], envs[3]])  # redelivered webhooks
    worker = Recorder()
    r = RunningWorker(worker, s).start()
    await wait_until(lambda: sum(worker.deliveries.values()) == 7, what="7 deliveries")
    await r.stop()
    assert worker.applied == {e.event_id for e in envs}


async def test_rebalance_two_workers_one_group(kafka_settings: KafkaSettings) -> None:
    s = worker_settings(kafka_settings)
    a, b = Recorder(), Recorder()
    ra = RunningWorker(a, s).start()
    await ra.assigned()
    assert len(ra.runtime.assignment) == 3
    await produce_envelopes(s, states(30))
    await wait_until(lambda: len(a.applied) == 30, what="first 30 on worker A")
    rb = RunningWorker(b, s).start()
    await wait_until(
        lambda: ra.runtime.assignment and rb.runtime.assignment
        and len(ra.runtime.assignment | rb.runtime.assignment) == 3,
        timeout=60, what="both workers own partitions",
    )
    assert not (ra.runtime.assignment & rb.runtime.assignment)
    later = states(30, start=30)
    await produce_envelopes(s, later)
    await wait_until(lambda: len(a.applied | b.applied) == 60, timeout=60, what="all 60 applied")
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
    r = RunningWorker(worker, s).start()
    await wait_until(lambda: len(worker.applied) == 2, what="2 applied")
    await wait_until(lambda: metrics.REGISTRY.get_sample_value("tpipe_worker_dlq_total", {"worker": name}) == 1,
                   what="dlq metric")
    await r.stop()
    get = metrics.REGISTRY.get_sample_value
    assert get("tpipe_worker_records_processed_total", {"worker": name}) == 2
    assert get("tpipe_worker_records_failed_total", {"worker": name}) == 1
    assert (get("tpipe_worker_commit_seconds_count", {"worker": name}) or 0) >= 1
