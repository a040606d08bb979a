"""The worker shape shared by the workers that keep their state in a SQL database (alerts, credits).

``start`` opens the engine (``consumers.sqlstore.make_engine``), builds the store, creates its
tables and starts the notification side (``NotifyService`` on the store's outbox). ``handle`` parses
every record (a malformed one becomes a ``Failure`` for the DLQ), then applies the rest in ONE call of
``store.apply`` (one transaction) in a thread before returning, so the runtime commits the Kafka
offsets only after the effects are durable. A transient database error raises ``RetryableError``
(the batch comes again); redeliveries are counted in ``WORKER_DUPLICATES``, and the dispatcher is
woken after a batch that enqueued notifications. ``stop`` stops the notifications and disposes of
the engine.

A subclass sets ``name``, ``event_types``, ``outbox`` and ``invalid_event`` and fills in the hooks: ``db_url``,
``make_store``, ``parse_event`` and, when it has more to do after a batch, ``after_apply``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import Engine

from consumers.notify.outbox import Outbox
from consumers.notify.service import NotifyService
from consumers.notify.settings import NotifySettings
from consumers.runtime import Failure, RetryableError, Worker, WorkerRecord
from consumers.sqlstore import is_transient, make_engine
from plumbing import metrics

__all__ = ["SqlStore", "SqlStoreWorker", "StoreResult"]

class StoreResult(Protocol):
    """What the worker reads from the result of ``store.apply``."""

    @property
    def duplicates(self) -> int: ...

    @property
    def notifications(self) -> list[str]: ...


_E_contra = TypeVar("_E_contra", contravariant=True)
_R_co = TypeVar("_R_co", bound=StoreResult, covariant=True)


class SqlStore(Protocol[_E_contra, _R_co]):
    """A store: its tables, and ``apply`` of a batch of parsed events in one transaction."""

    def create_tables(self) -> None: ...

    def apply(self, events: Sequence[_E_contra]) -> _R_co: ...


EventT = TypeVar("EventT")
ResultT = TypeVar("ResultT", bound=StoreResult)


class SqlStoreWorker(Worker, Generic[EventT, ResultT]):
    """A worker applying each batch to a SQL store in one transaction, notifying from its outbox."""

    outbox: ClassVar[Outbox]  # the store module's outbox
    invalid_event: ClassVar[type[Exception]]  # what ``parse_event`` raises for a record to dead-letter

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.store: SqlStore[EventT, ResultT] | None = None
        self.notify: NotifyService | None = None

    # --- hooks --------------------------------------------------------------------------------

    @property
    def db_url(self) -> str:
        """The database URL (from the settings)."""
        raise NotImplementedError

    def make_store(self, engine: Engine) -> SqlStore[EventT, ResultT]:
        raise NotImplementedError

    def parse_event(self, envelope: Any) -> EventT:
        """The record's envelope as the store's event; raises ``invalid_event`` for one that cannot be
        applied."""
        raise NotImplementedError

    def after_apply(self, result: ResultT) -> None:
        """Called after a batch was applied (before waking the dispatcher)."""

    # --- Worker -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.engine = make_engine(self.db_url)
        self.store = self.make_store(self.engine)
        await asyncio.to_thread(self.store.create_tables)
        self.notify = NotifyService(self.settings, self.engine, self.outbox, worker=self.name)
        await self.notify.start()

    async def handle(self, batch: list[WorkerRecord]) -> list[Failure]:
        assert self.store is not None
        failures: list[Failure] = []
        parsed: list[EventT] = []
        for rec in batch:
            try:
                parsed.append(self.parse_event(rec.envelope))
            except self.invalid_event as exc:
                failures.append(Failure(rec, str(exc), "InvalidEventError"))
        if not parsed:
            return failures
        try:
            result = await asyncio.to_thread(self.store.apply, parsed)
        except Exception as exc:
            if is_transient(exc):
                raise RetryableError(f"{self.name} database: {exc}") from exc
            raise
        if result.duplicates:
            metrics.WORKER_DUPLICATES.labels(self.name).inc(result.duplicates)
        self.after_apply(result)
        if result.notifications and self.notify is not None:
            self.notify.wake()
        return failures

    async def stop(self) -> None:
        if self.notify is not None:
            await self.notify.stop()
        if self.engine is not None:
            self.engine.dispose()
