"""``tpipe consume alerts``: alerts and errors events into the alerts database, notifying by rules.

Per batch: parse every record (a malformed one becomes a ``Failure`` and goes to the DLQ), then
apply the rest in ONE database transaction (events ledger, observations, occurrences, errors and
the notifications they cause, see ``consumers.alerts.store``) before returning, so the runtime
commits the Kafka offsets only after the effects are durable. Database outages raise
``RetryableError`` (the batch comes again). Notifications are delivered from the outbox by a
background dispatcher, woken after each batch that enqueued some.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from consumers.alerts.events import InvalidEventError, ParsedEvent, parse_event
from consumers.alerts.rules import Ruleset, load_rules
from consumers.alerts.settings import AlertsSettings
from consumers.alerts.store import AlertStore, ApplyResult
from consumers.alerts.tables import outbox
from consumers.sqlstore import redact_url
from consumers.sqlworker import SqlStoreWorker

__all__ = ["AlertsWorker"]

log = logging.getLogger("consumers.alerts")


class AlertsWorker(SqlStoreWorker[ParsedEvent, ApplyResult]):
    name = "alerts"
    event_types = ("alerts", "errors")
    outbox = outbox
    invalid_event = InvalidEventError

    def __init__(self, settings: AlertsSettings, *, rules: Ruleset | None = None) -> None:
        super().__init__(settings)
        self.settings: AlertsSettings = settings
        self.rules = rules if rules is not None else load_rules(settings.alert_rules)

    @property
    def db_url(self) -> str:
        return self.settings.alerts_db_url

    def make_store(self, engine: Engine) -> AlertStore:
        return AlertStore(engine, self.rules)

    def parse_event(self, envelope: Any) -> ParsedEvent:
        return parse_event(envelope)

    def describe(self) -> dict[str, Any]:
        return {"db": redact_url(self.settings.alerts_db_url), "rules": len(self.rules.rules)}
