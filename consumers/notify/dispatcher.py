"""Delivers pending outbox notifications to the sinks, in the background of a worker.

The worker calls ``wake()`` after each committed batch; the dispatcher also polls every
``poll_interval_s`` so notifications left pending by a crash or a failing sink are retried.
A sink's delivery is recorded right after it succeeds, so a crash in between re-sends to that sink
only (at-least-once, same notification id). On PostgreSQL, where several workers may share the
outbox, each notification is claimed first (``Outbox.claim``: a row lock its transaction holds while
it is delivered), so two dispatchers never deliver the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from sqlalchemy import Connection, Engine

from consumers.notify.model import Notification
from consumers.notify.outbox import Outbox, PendingNotification
from consumers.notify.sinks import DeliveryError, Sink

__all__ = ["Dispatcher"]

log = logging.getLogger("consumers.notify")


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        outbox: Outbox,
        sinks: Sequence[Sink],
        *,
        worker: str,
        poll_interval_s: float = 5.0,
        batch_size: int = 100,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.sinks = list(sinks)
        self.worker = worker
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"{self.worker}-notify")

    async def stop(self) -> None:
        """Stop the loop (a delivery in progress is cancelled and stays pending), close the sinks."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sink in self.sinks:
            await sink.stop()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a DB hiccup must not kill the loop; retried next tick
                log.exception("notification dispatch failed", extra={"worker": self.worker})
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def drain_once(self) -> int:
        """Try every pending notification once; returns how many are now done."""
        pending = await asyncio.to_thread(self.outbox.pending, self.engine, self.batch_size)
        done = 0
        for p in pending:
            if await self._deliver(p):
                done += 1
        if done:
            await asyncio.to_thread(_observe_pending, self)
        return done

    async def _deliver(self, p: PendingNotification) -> bool:
        if self.engine.dialect.name != "postgresql":  # SQLite: one worker process, nobody to race
            return await self._deliver_to(p.notification, p.done_sinks, self.engine)
        conn = await asyncio.to_thread(_begin, self.engine)
        try:
            done_sinks = await asyncio.to_thread(self.outbox.claim, conn, p.notification.notification_id)
            if done_sinks is None:  # another dispatcher delivers it, or has done so
                return False
            complete = await self._deliver_to(p.notification, done_sinks, conn)
            await asyncio.to_thread(conn.commit)
            return complete
        finally:
            with contextlib.suppress(Exception):
                conn.close()  # rolls back (lets go of the claim) unless committed

    async def _deliver_to(self, n: Notification, done_sinks: frozenset[str], claim: Engine | Connection) -> bool:
        """Deliver ``n`` to its sinks that do not have it yet; failures and completion are written
        through ``claim`` (the claiming transaction, or the engine)."""
        wanted = [s for s in self.sinks if n.sinks is None or s.name in n.sinks]
        complete = True
        for sink in wanted:
            if sink.name in done_sinks:
                continue
            try:
                status = await sink.deliver(n)
            except DeliveryError as exc:
                complete = False
                log.warning(
                    "notification delivery failed; will retry",
                    extra={"notification_id": n.notification_id, "sink": sink.name, "error": str(exc)},
                )
                await asyncio.to_thread(self.outbox.record_failure, claim, n.notification_id, str(exc))
                _count(sink.name, "failed")
                continue
            await asyncio.to_thread(self.outbox.record_delivery, self.engine, n.notification_id, sink.name, status)
            _count(sink.name, status)
        if complete:
            await asyncio.to_thread(self.outbox.mark_done, claim, n.notification_id)
        return complete


def _begin(engine: Engine) -> Connection:
    conn = engine.connect()
    conn.begin()
    return conn


def _count(sink: str, outcome: str) -> None:
    from plumbing import metrics

    metrics.NOTIFICATIONS.labels(sink=sink, outcome=outcome).inc()


def _observe_pending(d: Dispatcher) -> None:
    from plumbing import metrics

    metrics.NOTIFY_OUTBOX_PENDING.labels(worker=d.worker).set(d.outbox.counts(d.engine)["pending"])
