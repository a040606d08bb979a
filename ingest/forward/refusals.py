"""What a failed Kafka publish means for the record: retry it, fix its timestamp, dead-letter it,
or renew the producer and send it again.

The forwarder never lets one record stop the spool: a refusal that is permanent for *that record*
(its timestamp, its size, its bytes) sends it on (``TIMESTAMP``: to its topic stamped with the
receive time; ``RECORD``: to the DLQ) and the next one goes on. Everything else — the broker down,
not enough replicas, an authorization or policy refusal, an error code this client does not know —
is retried in spool order: those are the cluster's problems, not the record's, and skipping would
reorder or lose events. Such a stall is loud (health, metrics, logs) and clears by itself once the
cluster takes records again.
"""

from __future__ import annotations

import enum

from aiokafka import errors as ke

from ingest.errors import NotSubmittedError


class Disposition(enum.Enum):
    RETRY = "retry"  # the cluster's problem: keep the record, back off, send again in order
    TIMESTAMP = "timestamp"  # the topic refuses the record's timestamp: stamp it with received_at
    RECORD = "record"  # permanent for this record (too large, corrupt): dead-letter it
    PRODUCER = "producer"  # the producer's sequence state is broken: renew the producer, send again



_TIMESTAMP: tuple[type[BaseException], ...] = (ke.InvalidTimestampError,)
_RECORD: tuple[type[BaseException], ...] = (
    ke.MessageSizeTooLargeError,
    ke.RecordListTooLargeError,
    ke.RecordTooLargeError,  # client side: larger than the producer's max_request_size
    ke.CorruptRecordException,
    ke.UnsupportedForMessageFormatError,
)
_PRODUCER: tuple[type[BaseException], ...] = (
    ke.OutOfOrderSequenceNumber,
    ke.InvalidProducerEpoch,
    ke.UnknownProducerId,
    ke.InvalidProducerIdMapping,
    ke.ProducerFenced,
    ke.ProducerClosed,
    NotSubmittedError,
)


def classify(exc: BaseException) -> Disposition:
    if isinstance(exc, _TIMESTAMP):
        return Disposition.TIMESTAMP
    if isinstance(exc, _RECORD):
        return Disposition.RECORD
    if isinstance(exc, _PRODUCER):
        return Disposition.PRODUCER
    return Disposition.RETRY


def describe(exc: BaseException) -> str:
    """``ClassName: message`` (the class name alone when the message is empty)."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name
