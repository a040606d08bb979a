"""``tpipe consume credits``: credits events into the ledger, with the low-balance alarm.

Per batch: parse every record (malformed ones are returned as ``Failure``s for the DLQ), then
insert the rest and run the alarm in ONE transaction before returning (the runtime commits the
Kafka offsets after that). Database outages raise ``RetryableError``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from consumers.credits.settings import CreditsSettings
from consumers.credits.store import (
    ApplyResult,
    CreditEvent,
    CreditStore,
    InvalidEventError,
    outbox,
    parse_event,
)
from consumers.sqlstore import redact_url
from consumers.sqlworker import SqlStoreWorker
from plumbing import metrics

__all__ = ["CreditsWorker"]

log = logging.getLogger("consumers.credits")


class CreditsWorker(SqlStoreWorker[CreditEvent, ApplyResult]):
    name = "credits"
    event_types = ("credits",)
    outbox = outbox
    invalid_event = InvalidEventError

    def __init__(self, settings: CreditsSettings) -> None:
        super().__init__(settings)
        self.settings: CreditsSettings = settings

    @property
    def db_url(self) -> str:
        return self.settings.credits_db_url

    def make_store(self, engine: Engine) -> CreditStore:
        return CreditStore(engine, low_balance=self.settings.low_balance)

    def parse_event(self, envelope: Any) -> CreditEvent:
        return parse_event(envelope)

    def after_apply(self, result: ApplyResult) -> None:
        _set_balance(result.balance)

    def describe(self) -> dict[str, Any]:
        return {"db": redact_url(self.settings.credits_db_url), "low_balance": self.settings.low_balance}


def _set_balance(balance: int | None) -> None:
    if balance is not None:
        metrics.CREDITS_BALANCE.set(balance)
