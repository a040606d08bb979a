"""The forwarder as a task in the receiver's own event loop (``--forwarder inline``), supervised
like the child process: if forwarding ends by itself it is logged, counted and started again
(one body at a time for a while, then a body it keeps dying on goes to the DLQ as received)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ingest.forward.forwarder import Forwarder, producer_factory
from ingest.forward.health import ForwarderState, Supervision, record_down_metrics
from ingest.records import RecordBuilder
from ingest.settings import IngestSettings
from ingest.spool.log import Spool
from plumbing.retry import Backoff

log = logging.getLogger("tpipe.forwarder")


class InlineForwarder:
    mode = "inline"
    pid: int | None = None

    def __init__(self, settings: IngestSettings, spool: Spool, builder: RecordBuilder) -> None:
        self.settings = settings
        self.spool = spool
        self.builder = builder
        self.supervision = Supervision()
        self._stopping = False
        self._fw = self._new()

    def _new(self) -> Forwarder:
        s = self.settings
        fw = Forwarder(self.spool, producer_factory(s, self.builder), self.builder,
                       batch_events=s.forward_batch_events, max_inflight=s.forward_inflight_chunks,
                       gather_bytes=s.forward_gather_bytes)
        if self.supervision.deaths_here:
            fw.careful_bodies = s.forward_batch_events * s.forward_inflight_chunks
        return fw

    @property
    def forwarder(self) -> Forwarder:
        return self._fw

    @property
    def state(self) -> ForwarderState:
        return self._fw.state

    @property
    def forwarded(self) -> int:
        return self._fw.forwarded

    async def run(self) -> None:
        backoff = Backoff(0.5, cap=10.0)
        while not self._stopping:
            fw = self._fw
            s, sup = self.settings, self.supervision
            try:
                at = self.spool.cursor
                if s.forwarder_quarantine_after and sup.deaths_here >= s.forwarder_quarantine_after:
                    await fw.quarantine(at, f"the forwarder died {sup.deaths_here} times while forwarding this "
                                            f"body (last: {sup.last_death})")
                await fw.run()
                why = "forwarding ended by itself"
            except Exception as exc:
                why = f"forwarder crashed: {type(exc).__name__}: {exc}"
                log.error("forwarding stopped unexpectedly; restarting it", exc_info=True)
            if self._stopping:
                break
            sup.died(self.spool.cursor, why)
            record_down_metrics()
            with contextlib.suppress(Exception):
                await fw.delivery.close()
            await asyncio.sleep(backoff.next())
            self._fw = self._new()
            self._fw.state.last_error = why

    async def drain(self, timeout_s: float) -> bool:
        return await self._fw.drain(timeout_s)

    async def close(self) -> None:
        self._stopping = True
        await self._fw.close()
