"""The notification side of a worker: a producer (when a sink needs Kafka), the sinks, the dispatcher.

    svc = NotifyService(settings, engine, outbox, worker="alerts")
    await svc.start()      # in Worker.start()
    svc.wake()             # after a batch that enqueued notifications has committed
    await svc.stop()       # in Worker.stop()
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from consumers.notify.dispatcher import Dispatcher
from consumers.notify.outbox import Outbox
from consumers.notify.settings import NotifySettings, build_sinks
from plumbing.settings import KafkaSettings

__all__ = ["NotifyService"]

log = logging.getLogger("consumers.notify")


class NotifyService:
    def __init__(self, settings: NotifySettings, engine: Engine, outbox: Outbox, *, worker: str) -> None:
        if not isinstance(settings, KafkaSettings):
            raise TypeError("NotifyService needs settings that are also KafkaSettings")
        self.settings = settings
        self.engine = engine
        self.outbox = outbox
        self.worker = worker
        self.producer: Any | None = None
        self.dispatcher: Dispatcher | None = None

    async def start(self) -> None:
        from plumbing.kafka_clients import ensure_topics, make_producer
        from schemas.topics import dlq_topic, notifications_topic

        s = self.settings
        assert isinstance(s, KafkaSettings)
        if s.notify_kafka or s.notify_http_url:
            topics = [dlq_topic(s.topic_prefix)] + ([notifications_topic(s.topic_prefix)] if s.notify_kafka else [])
            await ensure_topics(s, topics)
            self.producer = make_producer(s, role=f"{self.worker}-notify")
            await self.producer.start()
        sinks = build_sinks(
            s,
            producer=self.producer,
            notifications_topic=notifications_topic(s.topic_prefix),
            dlq_topic=dlq_topic(s.topic_prefix),
            worker=self.worker,
        )
        self.dispatcher = Dispatcher(
            self.engine, self.outbox, sinks, worker=self.worker, poll_interval_s=s.notify_poll_interval_s
        )
        await self.dispatcher.start()
        log.info("notifications on", extra={"worker": self.worker, "sinks": [x.name for x in sinks]})

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
