"""The forwarder's health, one shape for both placements (inline task, child process), and the
rule that decides when forwarding is stalled.

``ForwarderState`` is kept by the ``Forwarder`` itself and mirrored by the receiver from the
child's status reports. ``Supervision`` counts the forwarder's deaths (the receiver restarts it).
``stall`` turns both, with the spool's own figures, into the verdict ``/readyz``, ``/healthz`` and
``tpipe_forwarder_stalled`` show.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingest.spool.files import Position
from plumbing import metrics

#: aiokafka retries what the cluster refuses for reasons of its own (not enough replicas, no
#: leader ...) without failing the send; its warnings are the only place that says why.
_KAFKA_LOGGERS = ("aiokafka.producer.sender", "aiokafka.producer.producer", "aiokafka.client")


@dataclass(slots=True)
class ForwarderState:
    broker_up: bool = False  # the last publish was acknowledged
    last_error: str | None = None
    publish_started: float | None = None  # monotonic: since when the oldest chunk in flight waits
    kafka_reachable: bool | None = None  # the last request or metadata probe got an answer (None: not yet)
    reachable_since: float | None = None  # monotonic, while reachable

    def publish_pending_s(self) -> float | None:
        """How long the chunk now in flight has waited for Kafka (None when nothing is in flight)."""
        started = self.publish_started
        return None if started is None else round(max(0.0, time.monotonic() - started), 3)

    def broker_reachable(self, stall_after_s: float) -> bool:
        """Up when the last publish succeeded and none has been waiting longer than ``stall_after_s``.

        The idempotent producer retries a batch until the broker takes it (no expiry, no duplicates),
        so a broker outage shows as a publish that stays pending, not as an error."""
        pending = self.publish_pending_s()
        return self.broker_up and (pending is None or pending <= stall_after_s)

    def set_reachable(self, ok: bool) -> None:
        if ok and not self.kafka_reachable:
            self.reachable_since = time.monotonic()
        elif not ok:
            self.reachable_since = None
        self.kafka_reachable = ok
        metrics.KAFKA_REACHABLE.set(1 if ok else 0)

    def report(self) -> list[Any]:
        """The child's status line (``["s", ...]``, see ``ingest.forward.process``)."""
        return ["s", self.broker_up, self.last_error, self.publish_started, self.kafka_reachable, self.reachable_since]

    def apply_report(self, m: list[Any]) -> None:
        self.broker_up, self.last_error, self.publish_started = m[1], m[2], m[3]
        self.kafka_reachable, self.reachable_since = m[4], m[5]
        metrics.KAFKA_REACHABLE.set(1 if self.kafka_reachable else 0)


@dataclass(slots=True)
class Supervision:
    """Deaths of the forwarder. ``deaths_here`` counts consecutive deaths without the spool cursor
    moving (at ``position``): the same body kills it again and again."""

    restarts: int = 0
    deaths_here: int = 0
    position: Position | None = None
    last_death: str | None = None

    def died(self, cursor: Position, why: str) -> None:
        self.restarts += 1
        self.deaths_here = self.deaths_here + 1 if cursor == self.position else 1
        self.position = cursor
        self.last_death = why
        metrics.FORWARDER_RESTARTS.inc()

    def moved(self, cursor: Position) -> None:
        """The cursor advanced: whatever killed the forwarder is behind us."""
        if self.position is not None and cursor > self.position:
            self.deaths_here = 0
            self.position = None


@dataclass(slots=True)
class Stall:
    reason: str
    spool_position: Position
    stuck_body_age_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "spool_position": [self.spool_position.segment, self.spool_position.offset],
                "stuck_body_age_s": None if self.stuck_body_age_s is None else round(self.stuck_body_age_s, 3)}


def stall(
    state: ForwarderState,
    supervision: Supervision,
    *,
    cursor: Position,
    oldest_age_s: float | None,
    stall_after_s: float,
    max_deaths: int,
) -> Stall | None:
    """Forwarding is stalled when the forwarder died ``max_deaths`` times in a row at one spool
    position, or when the oldest unforwarded body has waited longer than ``stall_after_s`` while
    Kafka was reachable (a backlog that waited out an outage counts from when Kafka came back)."""
    if max_deaths and supervision.deaths_here >= max_deaths:
        return Stall(f"the forwarder died {supervision.deaths_here} times at this spool position "
                     f"({supervision.last_death})", cursor, oldest_age_s)
    if oldest_age_s is None or not state.kafka_reachable or state.reachable_since is None:
        return None
    waited = min(oldest_age_s, time.monotonic() - state.reachable_since)
    if waited <= stall_after_s:
        return None
    why = state.last_error or "Kafka has not acknowledged it"
    return Stall(f"the oldest unforwarded body waited {waited:.0f} s while Kafka was reachable: {why}",
                 cursor, oldest_age_s)


class KafkaComplaints(logging.Handler):
    """Remembers aiokafka's latest warning (why a send is being retried)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: tuple[float, str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.last = (time.monotonic(), record.getMessage()[:500])
        except Exception:  # a log handler must never raise
            pass

    def since(self, t: float) -> str | None:
        last = self.last
        return last[1] if last is not None and last[0] >= t else None

    @classmethod
    def install(cls) -> KafkaComplaints:
        handler = cls()
        for name in _KAFKA_LOGGERS:
            logging.getLogger(name).addHandler(handler)
        return handler

    def uninstall(self) -> None:
        for name in _KAFKA_LOGGERS:
            logging.getLogger(name).removeHandler(self)


# ---- metrics the forwarder's reports turn into (in the receiver, whichever placement) ------------
def record_forwarded_metrics(events: int, counts: Mapping[str, list[int]], latency_s: float) -> None:
    metrics.BROKER_UP.set(1)
    metrics.FORWARDED.inc(events)
    metrics.FORWARD_LATENCY.observe(latency_s)
    for etype, (n, invalid) in counts.items():
        metrics.EVENTS_ACCEPTED.labels(etype).inc(n)
        if invalid:
            metrics.EVENTS_INVALID.labels(etype).inc(invalid)


def record_down_metrics() -> None:
    metrics.BROKER_UP.set(0)
    metrics.FORWARD_ERRORS.inc()


def apply_tally(tally: Mapping[str, int]) -> None:
    """``RecordBuilder.tally`` counts into their metrics."""
    for key, n in tally.items():
        if not n:
            continue
        if key == "timestamp_replaced":
            metrics.FORWARD_TIMESTAMP_REPLACED.inc(n)
        elif key.startswith("dlq:"):
            metrics.FORWARD_DEAD_LETTERS.labels(key[4:]).inc(n)

