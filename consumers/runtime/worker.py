"""What a worker is: the records it receives, the failures it reports, the hooks the runtime calls."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka.structs import TopicPartition

if TYPE_CHECKING:
    from schemas.envelope import Envelope

Offsets = dict[TopicPartition, int]
"""Partition -> offset of the *next* record to read (Kafka's commit convention)."""


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One Kafka record whose value decoded as an ``Envelope``, with where it came from."""

    envelope: Envelope
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def event_id(self) -> str:
        return str(self.envelope.event_id)


@dataclass(frozen=True, slots=True)
class Failure:
    """A record the worker could not process; the runtime dead-letters it and carries on."""

    record: WorkerRecord
    reason: str
    error_type: str = "WorkerError"
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, record: WorkerRecord, exc: BaseException) -> Failure:
        return cls(record, str(exc) or repr(exc), type(exc).__name__)


class Worker(abc.ABC):
    """A consumer worker. Subclass it, set ``name`` and ``event_types``, implement ``handle``.

    Lifecycle, all on one asyncio loop, never two hooks at the same time:

    ``start()`` once -> repeatedly: [``positions(assigned)`` on assignment] ``handle(batch)``,
    ``checkpoint(offsets, force=False)``, [``checkpoint(.., force=True)`` + ``on_revoked(parts)``
    on revocation] -> ``checkpoint(.., force=True)`` on drain -> ``stop()`` once.
    """

    #: Worker name: consumer group ``<prefix>.<name>``, metric label, log field.
    name: str = ""
    #: Event types (``schemas.event_types.EventType`` values) whose topics the worker reads.
    event_types: Sequence[str] = ()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections, create tables. Called before the consumer joins the group."""

    @abc.abstractmethod
    async def handle(self, batch: list[WorkerRecord]) -> list[Failure]:
        """Process ``batch`` (records in offset order per partition, any number of partitions).

        Effects must be idempotent by ``event_id``: a record may be delivered again (crash before
        the offset commit, redelivered webhook). A worker without its own buffering makes the
        effects durable before returning. Return the records to dead-letter (they count as
        handled). Raise ``RetryableError`` for a transient failure (the batch comes again after a
        back-off); any other exception makes the runtime retry the records one by one and
        dead-letter those that still raise, so a record that raises must leave no partial effect
        that is not idempotent.
        """

    async def checkpoint(self, offsets: Offsets, *, force: bool) -> Offsets | None:
        """Called after every poll (also an empty one) with the next offset of every partition
        handled so far since assignment (including dead-lettered records, and the positions the
        worker returned from ``positions``). Return the offsets whose effects are durable; the
        runtime commits them to Kafka. Default: everything handled is durable (``handle`` made it so).

        A buffering worker (the lake) flushes here when its buffer is due, or always when
        ``force`` (before a revocation and on shutdown), storing ``offsets`` with the data, and
        returns the offsets it made durable, or ``None`` when nothing new is durable.
        """
        return offsets

    async def positions(self, assigned: set[TopicPartition]) -> Offsets | None:
        """On assignment: the worker's own stored next offsets, if it keeps any (the runtime seeks
        there; partitions left out start from the group's committed offset). Default: ``None``."""
        return None

    async def on_revoked(self, partitions: set[TopicPartition]) -> None:  # noqa: B027 - optional hook
        """After the forced checkpoint of a revocation: forget per-partition state."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close connections. Called once, after the final checkpoint."""

    def describe(self) -> dict[str, Any]:
        """Extra fields for the startup log line."""
        return {}
