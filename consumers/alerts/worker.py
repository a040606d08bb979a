"""``tpipe consume alerts``: alerts and errors events into the alerts database, notifying by rules.

Per batch: parse every record (a malformed one becomes a ``Failure`` and goes to the DLQ), then
apply the rest in ONE database transaction (events ledger, observations, occurrences, errors and
the notifications they cause, see ``consumers.alerts.store``) before returning, so the runtime
commits the Kafka offsets only after the effects are durable. Database outages raise
``RetryableError`` (the batch comes again). Notifications are delivered from the outbox by a
background dispatcher, woken after each batch that enqueued some.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Engine

from consumers.alerts.rules import Ruleset, load_rules
from consumers.alerts.settings import AlertsSettings
from consumers.alerts.store import AlertStore, InvalidEventError, ParsedEvent, outbox, parse_event
from consumers.notify.service import NotifyService
from consumers.runtime import Failure, RetryableError, Worker, WorkerRecord
from consumers.sqlstore import is_transient, make_engine, redact_url
from tpipe import metrics

__all__ = ["AlertsWorker"]

log = logging.getLogger("consumers.alerts")


class AlertsWorker(Worker):
    name = "alerts"
    event_types = ("alerts", "errors")

    def __init__(self, settings: AlertsSettings, *, rules: Ruleset | None = None) -> None:
        self.settings = settings
        self.rules = rules if rules is not None else load_rules(settings.alert_rules)
        self.engine: Engine | None = None
        self.store: AlertStore | None = None
        self.notify: NotifyService | None = None

    async def start(self) -> None:
        self.engine = make_engine(self.settings.alerts_db_url)
        self.store = AlertStore(self.engine, self.rules)
        await asyncio.to_thread(self.store.create_tables)
        self.notify = NotifyService(self.settings, self.engine, outbox, worker=self.name)
        await self.notify.start()

    async def handle(self, batch: list[WorkerRecord]) -> list[Failure]:
        assert self.store is not None
        failures: list[Failure] = []
        parsed: list[ParsedEvent] = []
        for rec in batch:
            try:
                parsed.append(parse_event(rec.envelope))
            except InvalidEventError as exc:
                failures.append(Failure(rec, str(exc), "InvalidEventError"))
        if not parsed:
            return failures
        try:
            result = await asyncio.to_thread(self.store.apply, parsed)
        except Exception as exc:
            if is_transient(exc):
                raise RetryableError(f"alerts database: {exc}") from exc
            raise
        if result.duplicates:
            metrics.WORKER_DUPLICATES.labels(self.name).inc(result.duplicates)
        if result.notifications and self.notify is not None:
            self.notify.wake()
        return failures

    async def stop(self) -> None:
        if self.notify is not None:
            await self.notify.stop()
        if self.engine is not None:
            self.engine.dispose()

    def describe(self) -> dict[str, Any]:
        return {"db": redact_url(self.settings.alerts_db_url), "rules": len(self.rules.rules)}
