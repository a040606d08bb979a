"""Dead-letter records: the original bytes, with why and where from in the headers.

Headers added to the record's own headers (all utf-8):

    dlq_error           human-readable reason (truncated to 2000 characters)
    dlq_error_type      exception class name (``DecodeError`` when the value is not an Envelope)
    dlq_worker          worker name
    dlq_source_topic    topic the record was read from
    dlq_source_partition, dlq_source_offset
    dlq_at_ms           when it was dead-lettered (epoch ms)

Key, value and timestamp are the original record's, so a replay can re-publish them unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

DLQ_HEADERS = (
    "dlq_error",
    "dlq_error_type",
    "dlq_worker",
    "dlq_source_topic",
    "dlq_source_partition",
    "dlq_source_offset",
    "dlq_at_ms",
)
_MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record on its way to ``<prefix>.dlq``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None
    reason: str
    error_type: str

    def dlq_headers(self, worker: str) -> list[tuple[str, bytes]]:
        own = {
            "dlq_error": self.reason[:_MAX_REASON],
            "dlq_error_type": self.error_type,
            "dlq_worker": worker,
            "dlq_source_topic": self.topic,
            "dlq_source_partition": str(self.partition),
            "dlq_source_offset": str(self.offset),
            "dlq_at_ms": str(int(time.time() * 1000)),
        }
        kept = [(k, v) for k, v in self.headers if k not in own]
        return kept + [(k, v.encode()) for k, v in own.items()]


def header_map(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Headers as a str -> str dict (last one wins), for tests and tooling."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers}
