"""``tpipe consume credits``: credits events into the ledger, with the low-balance alarm.

Per batch: parse every record (malformed ones are returned as ``Failure``s for the DLQ), then
insert the rest and run the alarm in ONE transaction before returning (the runtime commits the
Kafka offsets after that). Database outages raise ``RetryableError``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Engine

from consumers.credits.settings import CreditsSettings
from consumers.credits.store import CreditEvent, CreditStore, InvalidEventError, outbox, parse_event
from consumers.notify.service import NotifyService
from consumers.runtime import Failure, RetryableError, Worker, WorkerRecord
from consumers.sqlstore import is_transient, make_engine, redact_url
from tpipe import metrics

__all__ = ["CreditsWorker"]

log = logging.getLogger("consumers.credits")


class CreditsWorker(Worker):
    name = "credits"
    event_types = ("credits",)

    def __init__(self, settings: CreditsSettings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.store: CreditStore | None = None
        self.notify: NotifyService | None = None

    async def start(self) -> None:
        self.engine = make_engine(self.settings.credits_db_url)
        self.store = CreditStore(self.engine, low_balance=self.settings.low_balance)
        await asyncio.to_thread(self.store.create_tables)
        self.notify = NotifyService(self.settings, self.engine, outbox, worker=self.name)
        await self.notify.start()

    async def handle(self, batch: list[WorkerRecord]) -> list[Failure]:
        assert self.store is not None
        failures: list[Failure] = []
        events: list[CreditEvent] = []
        for rec in batch:
            try:
                events.append(parse_event(rec.envelope))
            except InvalidEventError as exc:
                failures.append(Failure(rec, str(exc), "InvalidEventError"))
        if not events:
            return failures
        try:
            result = await asyncio.to_thread(self.store.apply, events)
        except Exception as exc:
            if is_transient(exc):
                raise RetryableError(f"credits database: {exc}") from exc
            raise
        if result.duplicates:
            metrics.WORKER_DUPLICATES.labels(self.name).inc(result.duplicates)
        _set_balance(result.balance)
        if result.notifications and self.notify is not None:
            self.notify.wake()
        return failures

    async def stop(self) -> None:
        if self.notify is not None:
            await self.notify.stop()
        if self.engine is not None:
            self.engine.dispose()

    def describe(self) -> dict[str, Any]:
        return {"db": redact_url(self.settings.credits_db_url), "low_balance": self.settings.low_balance}


def _set_balance(balance: int | None) -> None:
    if balance is not None:
        metrics.CREDITS_BALANCE.set(balance)
