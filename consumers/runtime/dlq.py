"""Dead-letter records from the workers: the original bytes, with why and where from in the headers.

Header names and meanings: ``schemas.dlq`` (one contract for the receiver and every worker).
Key, value and timestamp are the original record's, so a replay can re-publish them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.dlq import DLQ_HEADERS, dlq_headers

__all__ = ["DLQ_HEADERS", "DeadLetter", "header_map"]


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
        return dlq_headers(
            self.headers, reason=self.reason, error_type=self.error_type, worker=worker,
            source_topic=self.topic, source_partition=self.partition, source_offset=self.offset,
        )


def header_map(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Headers as a str -> str dict (last one wins), for tests and tooling."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers}
