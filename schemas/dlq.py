"""The dead-letter contract: header names every producer of ``<prefix>.dlq`` records writes.

A dead letter keeps the original key, value and headers (for the receiver: the envelope, or the
webhook body as received when it could not be parsed) and adds, all utf-8:

    dlq_error             human-readable reason (at most 2000 characters)
    dlq_error_type        what went wrong: an exception class name or a fixed word
                          (SchemaValidationError, BodyError, RecordTooLarge, ForwarderCrash ...)
    dlq_worker            who dead-lettered it: ``receiver`` or a worker name
    dlq_source_topic      the topic the record was read from, or would have gone to
    dlq_source_partition  (workers) the partition it was read from
    dlq_source_offset     (workers) its offset there
    dlq_at_ms             when it was dead-lettered (epoch ms)

Other headers a dead letter may carry: ``validation_errors`` (receiver, JSON list), ``received_at_ms``
(receiver, a webhook body as received: no source topic, empty key), ``dlq_body_item`` (receiver: which
event of the body), ``dlq_sink`` and ``notification_id`` (an undeliverable notification).

``tpipe dlq redrive`` sends a record back without the dead-letter headers (``DLQ_ONLY_HEADERS``) and
with ``dlq_redriven_from`` = ``<partition>:<offset>`` of the dead letter it came from; it records each
redrive in the compacted topic ``<prefix>.dlq.redriven`` (key ``<partition>:<offset>``).
"""

from __future__ import annotations

import time

__all__ = [
    "DLQ_AT_MS",
    "DLQ_ERROR",
    "DLQ_ERROR_TYPE",
    "DLQ_HEADERS",
    "DLQ_ONLY_HEADERS",
    "DLQ_REDRIVEN_FROM",
    "DLQ_SOURCE_OFFSET",
    "DLQ_SOURCE_PARTITION",
    "DLQ_SOURCE_TOPIC",
    "DLQ_WORKER",
    "MAX_REASON",
    "dlq_headers",
]

DLQ_ERROR = "dlq_error"
DLQ_ERROR_TYPE = "dlq_error_type"
DLQ_WORKER = "dlq_worker"
DLQ_SOURCE_TOPIC = "dlq_source_topic"
DLQ_SOURCE_PARTITION = "dlq_source_partition"
DLQ_SOURCE_OFFSET = "dlq_source_offset"
DLQ_AT_MS = "dlq_at_ms"

DLQ_HEADERS = (
    DLQ_ERROR,
    DLQ_ERROR_TYPE,
    DLQ_WORKER,
    DLQ_SOURCE_TOPIC,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_OFFSET,
    DLQ_AT_MS,
)
MAX_REASON = 2000
DLQ_REDRIVEN_FROM = "dlq_redriven_from"
#: headers that describe the dead-lettering, not the record: dropped when a record is redriven
DLQ_ONLY_HEADERS = frozenset(
    {*DLQ_HEADERS, DLQ_REDRIVEN_FROM, "validation_errors", "received_at_ms", "dlq_body_item", "dlq_sink"}
)


def dlq_headers(
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
    *,
    reason: str,
    error_type: str,
    worker: str,
    source_topic: str | None = None,
    source_partition: int | None = None,
    source_offset: int | None = None,
    at_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """``headers`` (the record's own, minus any earlier ``dlq_*``) followed by the dead-letter headers."""
    own: dict[str, str] = {
        DLQ_ERROR: reason[:MAX_REASON],
        DLQ_ERROR_TYPE: error_type,
        DLQ_WORKER: worker,
    }
    if source_topic is not None:
        own[DLQ_SOURCE_TOPIC] = source_topic
    if source_partition is not None:
        own[DLQ_SOURCE_PARTITION] = str(source_partition)
    if source_offset is not None:
        own[DLQ_SOURCE_OFFSET] = str(source_offset)
    own[DLQ_AT_MS] = str(at_ms if at_ms is not None else int(time.time() * 1000))
    kept = [(k, v) for k, v in headers if k not in DLQ_HEADERS]
    return kept + [(k, v.encode()) for k, v in own.items()]
