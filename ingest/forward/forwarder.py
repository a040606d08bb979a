"""Forwarder: publishes the spool to Kafka in spool order and advances the cursor after Kafka acks.

It survives a broker that is down at start, goes away, or is slow: the spool keeps growing on disk,
and the forwarder waits until the broker takes the records again. The cursor moves only once every
record of a chunk is in Kafka (acks=all, idempotent producer), so a crash means re-sending —
at-least-once into Kafka, with the same ``event_id`` for consumers to deduplicate on — never a loss.

No single record stops it: a body the parser refuses and an event whose record cannot be built
become dead letters (``ingest.records``); a record Kafka refuses is re-sent alone and ends in its
topic (with its receive time as timestamp when the topic refuses the event's own) or in the DLQ
(``ingest.forward.delivery``); the records Kafka already took are not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer

from ingest.errors import StoppedError
from ingest.forward.delivery import Delivery, wait_done
from ingest.forward.health import (
    ForwarderState,
    KafkaComplaints,
    apply_tally,
    record_down_metrics,
    record_forwarded_metrics,
)
from ingest.forward.publisher import Part, PartitionGate, ProducerFactory, outcomes, submit
from ingest.forward.refusals import describe
from ingest.forward.topic_rules import load_topic_rules
from ingest.records import KafkaRecord, RecordBuilder, TypeCounts
from ingest.settings import IngestSettings
from ingest.spool.files import Position
from ingest.spool.frame import SpooledBody
from plumbing import kafka_clients
from plumbing.retry import Backoff, pause
from schemas import topics

log = logging.getLogger("tpipe.forwarder")

PROBE_EVERY_S = 1.0  # how often health is refreshed and, while a publish waits, Kafka probed


async def wait_forwarded(
    has_unforwarded: Callable[[], bool],
    progress: asyncio.Event,
    timeout_s: float,
    nudge: Callable[[], None] | None = None,
) -> bool:
    """Wait (re-checking whenever ``progress`` is set, at least every 0.5 s) until nothing is left
    unforwarded or ``timeout_s`` passes; True if drained. ``nudge`` wakes an idle forwarder loop."""
    deadline = time.monotonic() + timeout_s
    while has_unforwarded():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        progress.clear()
        if nudge is not None:
            nudge()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), timeout=min(remaining, 0.5))
    return True


class SpoolSource(Protocol):
    """What the forwarder needs of a spool: the receiver's ``Spool`` itself (inline forwarder), or
    the forwarder process's view of the same directory (``ingest.forward.child.SpoolView``)."""

    committed: asyncio.Event

    @property
    def cursor(self) -> Position: ...

    def read(self, start: Position, *, max_records: int) -> tuple[list[SpooledBody], Position]: ...

    def advance(self, new_cursor: Position, events: int) -> None: ...

    def has_unforwarded(self) -> bool: ...

    def unread_bytes(self, pos: Position) -> int: ...


def expand_raw(records: list[SpooledBody], builder: RecordBuilder, counts: TypeCounts) -> list[KafkaRecord]:
    """Spooled webhook bodies -> their Kafka records, in spool order."""
    out: list[KafkaRecord] = []
    expand = builder.expand
    for r in records:
        out.extend(expand(r, counts))
    return out


def producer_factory(settings: IngestSettings, builder: RecordBuilder | None = None) -> ProducerFactory:
    """Topics ensured (and, with ``builder``, what each accepts read: ``topic_rules``), then the forwarder's
    producer started (retried by the caller on failure)."""

    async def start() -> AIOKafkaProducer:
        names = topics.all_topics(settings.topic_prefix)
        await kafka_clients.ensure_topics(settings, names)
        if builder is not None:
            builder.rules = await load_topic_rules(settings, names)
        producer = kafka_clients.make_producer(
            settings, role="forwarder", request_timeout_ms=int(settings.broker_timeout_s * 1000)
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    return start


@dataclass(slots=True)
class _Chunk:
    """One chunk read from the spool and submitted to the producer, awaiting its acknowledgements."""

    end: Position  # spool position after its last frame
    spool_records: int  # frames it covers (webhook bodies)
    out: list[KafkaRecord]  # the Kafka records built from them
    counts: TypeCounts
    spooled_at_ms: int | None  # of its first frame
    parts: list[Part]
    started: float  # monotonic, when it was read

    def done(self) -> bool:
        return all(p.future.done() for p in self.parts)

    def failed(self) -> bool:
        return any(p.future.exception() is not None for p in self.parts)


class Forwarder:
    def __init__(
        self,
        spool: SpoolSource,
        producer_factory: ProducerFactory,
        builder: RecordBuilder,
        *,
        batch_events: int = 5000,
        max_inflight: int = 3,
        max_backoff_s: float = 5.0,
        gather_bytes: int = 0,
    ) -> None:
        self.spool = spool
        self.builder = builder
        self.batch_events = batch_events
        self.max_inflight = max(1, max_inflight)
        self.max_backoff_s = max_backoff_s
        #: while a chunk is in flight, the next one is read only once this much is committed (or the
        #: chunk is acknowledged): Kafka takes it after the one in flight anyway, and each chunk costs
        #: its read, batches, compression, produce request and cursor write whatever its size
        self.gather_bytes = gather_bytes
        self.state = ForwarderState()
        self.delivery = Delivery(producer_factory, builder, max_backoff_s=max_backoff_s, on_error=self._mark_down)
        self.forwarded = 0
        #: after a death: bodies still to forward one at a time, so a second death names the exact body
        self.careful_bodies = 0
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._complaints: KafkaComplaints | None = None
        self._refusal: tuple[float, str] | None = None  # (monotonic, why) of the last failed publish
        self._gate = PartitionGate()
        self._gate_producer: AIOKafkaProducer | None = None

    # ---- health --------------------------------------------------------------------------------
    @property
    def last_error(self) -> str | None:
        return self.state.last_error

    def broker_reachable(self, stall_after_s: float) -> bool:
        return self.state.broker_reachable(stall_after_s)

    def publish_pending_s(self) -> float | None:
        return self.state.publish_pending_s()

    @property
    def producer(self) -> AIOKafkaProducer | None:
        return self.delivery.current

    def stop(self) -> None:
        self._stop.set()
        self.spool.committed.set()

    # ---- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Forward until ``stop()``: up to ``max_inflight`` chunks in flight, acknowledged in order.

        While Kafka acknowledges one chunk the next is read, parsed and submitted. The cursor only
        moves past a chunk once it and every chunk before it are in Kafka. When Kafka refused part of
        a chunk, every chunk in flight is first settled, then exactly the refused records are
        delivered (``Delivery.deliver``), then the cursor moves past them all.
        """
        self._complaints = KafkaComplaints.install()
        watch = asyncio.ensure_future(self._watch())
        inflight: deque[_Chunk] = deque()
        try:
            await self._loop(inflight)
        except StoppedError:
            pass
        finally:
            watch.cancel()
            self._complaints.uninstall()
            for chunk in inflight:
                _settle(chunk.parts)
            self.state.publish_started = None
            self._idle.set()

    async def _loop(self, inflight: deque[_Chunk]) -> None:
        backoff = Backoff(0.1, self.max_backoff_s)
        pos = self.spool.cursor
        ready: tuple[list[SpooledBody], Position, list[KafkaRecord], TypeCounts, float] | None = None
        while not self._stop.is_set():
            while inflight and inflight[0].done():
                if inflight[0].failed():
                    await self._recover(inflight)
                else:
                    self._complete(inflight.popleft())
            careful = self.careful_bodies > 0
            gather = False
            if ready is None and inflight and not careful and self.gather_bytes:
                self.spool.committed.clear()  # first: a commit from now on wakes the wait below
                gather = self.spool.unread_bytes(pos) < self.gather_bytes
            if len(inflight) < (1 if careful else self.max_inflight) and not gather:
                if ready is None:
                    self.spool.committed.clear()
                    records, end = self.spool.read(pos, max_records=1 if careful else self.batch_events)
                    if records or end != pos:
                        try:  # first: starting the producer reads what each topic accepts (topic_rules)
                            producer = await self.delivery.producer()
                        except Exception as exc:  # Kafka not there (yet): the chunk waits, nothing is lost
                            self._mark_down(exc)
                            await pause(backoff.next(), self._stop)
                            continue
                        counts: TypeCounts = {}
                        ready = (records, end, expand_raw(records, self.builder, counts), counts, time.monotonic())
                if ready is not None:
                    records, end, out, counts, started = ready
                    try:
                        producer = await self.delivery.producer()
                    except Exception as exc:  # Kafka gone meanwhile: the chunk waits, nothing is lost
                        self._mark_down(exc)
                        await pause(backoff.next(), self._stop)
                        continue
                    backoff.reset()
                    if producer is not self._gate_producer:  # the broker knows nothing of a new producer
                        self._gate.clear()
                        self._gate_producer = producer
                    parts = await submit(producer, out, self._gate, self.builder.batch_bytes) if out else []
                    inflight.append(_Chunk(end, len(records), out, counts,
                                           records[0].spooled_at_ms if records else None, parts, started))
                    pos, ready = end, None
                    continue
            if not inflight:
                self.state.publish_started = None
                self._idle.set()
                await self.spool.committed.wait()
                continue
            self._idle.clear()
            head = inflight[0]
            self.state.publish_started = head.started
            await wait_done([p.future for p in head.parts], self._stop, self.spool.committed if gather else None)

    async def _recover(self, inflight: deque[_Chunk]) -> None:
        """Kafka refused records of the head chunk: settle every chunk in flight, deliver exactly the
        records it did not take (in spool order), then complete the chunks."""
        await wait_done([p.future for c in inflight for p in c.parts], self._stop)
        refused: list[KafkaRecord] = []
        first: BaseException | None = None
        for chunk in inflight:
            for rec, exc in zip(chunk.out, outcomes(chunk.parts, len(chunk.out)), strict=True):
                if exc is not None:
                    refused.append(rec)
                    first = first or exc
        log.warning("kafka refused records; delivering them one by one",
                    extra={"refused": len(refused), "chunks": len(inflight),
                           "error": describe(first) if first else None})
        self.state.publish_started = inflight[0].started
        await self.delivery.deliver(refused, self._stop)
        while inflight:
            self._complete(inflight.popleft())

    def _complete(self, chunk: _Chunk) -> None:
        """Every record of the head chunk is in Kafka: report it and move the cursor."""
        if chunk.out:
            if not self.state.broker_up:
                log.info("kafka reachable, forwarding", extra={"cursor": [chunk.end.segment, chunk.end.offset]})
            self.state.broker_up, self.state.last_error = True, None
            self.state.set_reachable(True)
            self.forwarded += len(chunk.out)
            latency = max(0.0, time.time() - (chunk.spooled_at_ms or 0) / 1000)
            tally = dict(self.builder.tally)
            self.builder.tally.clear()
            self.report_forwarded(len(chunk.out), chunk.counts, latency, tally)  # first: metrics are current once drained
            if log.isEnabledFor(logging.DEBUG):
                log.debug("forwarded", extra={"records": len(chunk.out), "spool_records": chunk.spool_records})
        self.spool.advance(chunk.end, chunk.spool_records)
        if self.careful_bodies:
            self.careful_bodies = max(0, self.careful_bodies - chunk.spool_records)

    async def quarantine(self, at: Position, reason: str) -> bool:
        """Dead-letter the body at ``at`` as received, unparsed (the forwarder died on it again and
        again) and move the cursor past it; False if the cursor is no longer there."""
        if self.spool.cursor != at:
            return False
        records, end = self.spool.read(at, max_records=1)
        if not records:
            return False
        rec = self.builder.raw_dead_letter(records[0], reason, "ForwarderCrash")
        log.error("body quarantined to the DLQ: the forwarder died on it repeatedly",
                  extra={"spool_position": [at.segment, at.offset], "bytes": len(records[0].body), "reason": reason})
        await self.delivery.deliver([rec], self._stop)
        self.builder.tally["dlq:forwarder_crash"] += 1
        self._complete(_Chunk(end, 1, [rec], {}, records[0].spooled_at_ms, [], time.monotonic()))
        return True

    async def _watch(self) -> None:
        """Once a second: say why a publish waits (aiokafka's own complaint) and, while one waits or
        Kafka is down, whether Kafka answers at all (a metadata request)."""
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            st = self.state
            pending = st.publish_pending_s()
            if st.broker_up and (pending is None or pending < 2 * PROBE_EVERY_S):
                continue
            if pending is not None and pending >= 2 * PROBE_EVERY_S and st.publish_started is not None:
                st.last_error = f"Kafka has not acknowledged for {pending:.0f} s" + self._why_pending(st.publish_started)
            reachable = await self._probe()
            if reachable is not None:
                st.set_reachable(reachable)
            self.report_status()

    def _why_pending(self, since: float) -> str:
        refusal = self._refusal
        if refusal is not None and refusal[0] >= since:
            return f"; last refusal: {refusal[1]}"
        said = self._complaints.since(since) if self._complaints else None
        return f"; Kafka said: {said}" if said else ""

    async def _probe(self) -> bool | None:
        """Whether Kafka answers a metadata request; None before there is a producer to ask with
        (nothing to forward yet, or it is being started)."""
        producer = self.delivery.current
        if producer is None:
            return None if self.state.last_error is None else False
        try:
            return bool(await asyncio.wait_for(producer.client.force_metadata_update(), timeout=5.0))
        except Exception:
            return False

    # ---- reports (the child process overrides them to send them to the receiver) --------------
    def report_forwarded(self, events: int, counts: TypeCounts, latency_s: float, tally: dict[str, int]) -> None:
        """Kafka took a chunk: ``events`` records, ``counts`` per type, oldest one spooled ``latency_s`` ago."""
        record_forwarded_metrics(events, counts, latency_s)
        apply_tally(tally)

    def report_down(self) -> None:
        """A publish failed (``state`` says why)."""
        record_down_metrics()

    def report_status(self) -> None:
        """``state`` changed without a publish (the watch loop)."""

    def _mark_down(self, exc: BaseException) -> None:
        msg = describe(exc)
        if self.state.broker_up or self.state.last_error is None:
            log.warning("kafka publish failed, keeping events in the spool", extra={"error": msg})
        self.state.broker_up, self.state.last_error = False, msg
        self._refusal = (time.monotonic(), msg)
        self.report_down()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the spool is fully forwarded or ``timeout_s`` passes; True if drained."""
        return await wait_forwarded(self.spool.has_unforwarded, self._idle, timeout_s, nudge=self.spool.committed.set)

    async def close(self) -> None:
        self.stop()
        await self.delivery.close()


def _settle(parts: list[Part]) -> None:
    """Abandoned acknowledgements: retrieve their outcome later so none is reported as unhandled."""
    futures = [p.future for p in parts]
    if futures:
        asyncio.ensure_future(asyncio.gather(*futures, return_exceptions=True))
