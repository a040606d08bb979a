"""Counting dead letters: by worker and error type, overall and per hour or day.

``dlq_stats`` reads the DLQ once (streaming: only the counts are kept) and the redrive log, and
returns ``DlqStats``: per (worker, error type) the count, the first and last dead-letter time and how
many were redriven; and per time bucket (UTC hour or day of ``dlq_at_ms``) and (worker, error type)
the count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from consumers.dlq.reader import DlqFilter, iter_dlq
from consumers.dlq.redrive import read_redriven
from plumbing.settings import KafkaSettings
from schemas.times import format_ms

__all__ = ["BUCKETS", "DlqStats", "dlq_stats"]

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
    width, chars = BUCKETS[bucket]
    redriven = await read_redriven(settings)
    counts: Counter[tuple[str, str]] = Counter()
    redriven_counts: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], int] = {}
    by_time: Counter[tuple[int, str, str]] = Counter()
    async for r in iter_dlq(settings, flt):
        key = (r.worker, r.error_type)
        at = r.at_ms
        counts[key] += 1
        first[key] = min(first.get(key, at), at)
        last[key] = max(last.get(key, at), at)
        by_time[(at - at % width, *key)] += 1
        mark = redriven.get(r.position)
        if mark is not None and mark.get("dlq_at_ms") == at:
            redriven_counts[key] += 1
    totals = [
        {"worker": w, "error_type": e, "count": n, "redriven": redriven_counts[(w, e)],
         "first": format_ms(first[(w, e)]), "last": format_ms(last[(w, e)])}
        for (w, e), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    suffix = ":00Z" if bucket == "hour" else ""
    rows = [
        {"bucket": format_ms(t)[:chars] + suffix, "worker": w, "error_type": e, "count": n}
        for (t, w, e), n in sorted(by_time.items())
    ]
    return DlqStats(bucket, totals, rows)
