"""An Iceberg lake filled by the real telemetry worker, and ``tpipe lake`` run in-process."""

from __future__ import annotations

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from consumers.lake.settings import LakeSettings
from consumers.lake.worker import TelemetryWorker
from schemas.topics import topic_for
from tests.support.kafka_broker import committed_offsets, end_offsets
from tests.support.waiting import wait_until
from tests.support.workers import RunningWorker
from tpipe.cli import main as tpipe_main

#: the event types the lake keeps (its tables: telemetry, vehicle_state, vehicle_data)
LAKE_TYPES = ("data", "state", "connectivity", "vehicle_data")


async def fill_lake(settings: LakeSettings, timeout: float = 120.0) -> None:
    """Run the telemetry worker until its consumer group has committed the end of every lake topic
    (the topics must exist), then stop it (a drain)."""
    ends: dict[TopicPartition, int] = {}
    for t in LAKE_TYPES:
        ends.update(await end_offsets(settings, topic_for(t, settings.topic_prefix)))
    worker = RunningWorker(TelemetryWorker(settings), settings).start()
    assert worker.task is not None

    async def caught_up() -> bool:
        if worker.task is not None and worker.task.done():
            worker.task.result()  # the worker's error, if it died
            raise AssertionError("the telemetry worker stopped before the lake caught up")
        try:
            committed = await committed_offsets(settings, settings.group_for("telemetry"))
        except KafkaError as exc:  # e.g. the group coordinator still loading on a fresh broker
            if not exc.retriable:
                raise
            return False
        return all(end == 0 or committed.get(tp, -1) >= end for tp, end in ends.items())

    try:
        await wait_until(caught_up, "the lake to catch up with its topics", timeout=timeout, interval=0.2)
    finally:
        await worker.stop()


def lake_cli(*argv: str) -> int:
    """``tpipe lake <argv>`` in-process (``tpipe.cli.main``): its exit code."""
    return tpipe_main(["lake", *argv])
