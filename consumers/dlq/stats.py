"""Counting dead letters: by worker and error type, overall and per hour or day.

``dlq_stats`` reads the DLQ once (streaming through ``DlqCounts``: only the counts are kept) and the
redrive log, and returns ``DlqStats``: per (worker, error type) the count, the first and last dead-letter time and how
many were redriven; and per time bucket (UTC hour or day of ``dlq_at_ms``) and (worker, error type)
the count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from consumers.dlq.reader import DlqFilter, DlqRecord, iter_dlq
from consumers.dlq.redrive import read_redriven
from plumbing.settings import KafkaSettings
from schemas.times import format_ms

__all__ = ["BUCKETS", "DlqCounts", "DlqStats", "dlq_stats"]

#: bucket name -> (width in ms, characters of the ISO time kept)
BUCKETS: dict[str, tuple[int, int]] = {"hour": (3_600_000, 13), "day": (86_400_000, 10)}


@dataclass
class DlqStats:
    bucket: str
    totals: list[dict[str, Any]] = field(default_factory=list)  # worker, error_type, count, first, last, redriven
    by_time: list[dict[str, Any]] = field(default_factory=list)  # bucket, worker, error_type, count

    @property
    def total(self) -> int:
        return sum(int(t["count"]) for t in self.totals)

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "total": self.total, "totals": self.totals, "by_time": self.by_time}


async def dlq_stats(settings: KafkaSettings, flt: DlqFilter | None = None, *, bucket: str = "hour") -> DlqStats:
    """The counts of the dead letters matching ``flt`` (reads the DLQ, streaming, and the redrive log)."""
    redriven = await read_redriven(settings)
    counts = DlqCounts(bucket, redriven)
    async for r in iter_dlq(settings, flt):
        counts.add(r)
    return counts.stats()


class DlqCounts:
    """Counting dead letters one at a time (``add``) against the redrive log's ``redriven`` marks; ``stats()``
    is the result. ``dlq_stats`` streams the DLQ through it; a caller holding the records already (the
    console's list) counts them without reading the DLQ again."""

    def __init__(self, bucket: str, redriven: dict[str, dict[str, Any]]) -> None:
        self.bucket = bucket
        self.width, self.chars = BUCKETS[bucket]
        self.redriven = redriven
        self.counts: Counter[tuple[str, str]] = Counter()
        self.redriven_counts: Counter[tuple[str, str]] = Counter()
        self.first: dict[tuple[str, str], int] = {}
        self.last: dict[tuple[str, str], int] = {}
        self.by_time: Counter[tuple[int, str, str]] = Counter()

    def add(self, r: DlqRecord) -> None:
        key = (r.worker, r.error_type)
        at = r.at_ms
        self.counts[key] += 1
        self.first[key] = min(self.first.get(key, at), at)
        self.last[key] = max(self.last.get(key, at), at)
        self.by_time[(at - at % self.width, *key)] += 1
        mark = self.redriven.get(r.position)
        if mark is not None and mark.get("dlq_at_ms") == at:
            self.redriven_counts[key] += 1

    def stats(self) -> DlqStats:
        totals = [
            {"worker": w, "error_type": e, "count": n, "redriven": self.redriven_counts[(w, e)],
             "first": format_ms(self.first[(w, e)]), "last": format_ms(self.last[(w, e)])}
            for (w, e), n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        suffix = ":00Z" if self.bucket == "hour" else ""
        rows = [
            {"bucket": format_ms(t)[: self.chars] + suffix, "worker": w, "error_type": e, "count": n}
            for (t, w, e), n in sorted(self.by_time.items())
        ]
        return DlqStats(self.bucket, totals, rows)
