"""Run a replay: resolve the ranges, then either count (dry run) or deliver to a sink."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from typing import TextIO

from consumers.replay.kafka_source import KafkaSource, PartitionRange
from consumers.replay.progress import Progress, RateLimiter
from consumers.replay.selection import ReplayEvent, Selection
from consumers.replay.sinks import Sink
from consumers.replay.text import columns
from plumbing.settings import KafkaSettings
from schemas.times import format_ms

__all__ = ["deliver", "describe_selection", "format_ranges", "replay_kafka"]


def describe_selection(sel: Selection, *, slack: bool = True) -> str:
    start = "the beginning" if sel.from_ms is None else format_ms(sel.from_ms)
    vins = ", ".join(sorted(sel.vins)) if sel.vins else "all"
    types = ", ".join(t.value for t in sel.types)
    window = f"window: created_at from {start} to {format_ms(sel.to_ms)} (end excluded)"
    if slack:
        window += f"; slack {sel.slack_ms // 1000}s"
    return f"{window}\nvins: {vins}\ntypes: {types}"


def format_ranges(ranges: Sequence[PartitionRange], *, counted: bool) -> str:
    """A table: topic, partition, start offset, end offset, records read, matching events."""
    head = ("topic", "partition", "start_offset", "end_offset", "stopped_at", "records_read", "events")
    rows = [
        (
            r.topic,
            str(r.partition),
            str(r.start),
            str(r.end),
            "-" if r.stopped_at is None else str(r.stopped_at),
            str(r.scanned) if counted else "?",
            str(r.matched) if counted else "?",
        )
        for r in ranges
    ]
    return columns(head, rows)


async def deliver(
    events: AsyncIterator[ReplayEvent], sink: Sink, *, rate: float | None, progress: Progress
) -> int:
    """Send every event to ``sink`` (in order, at most ``rate`` per second); returns the count."""
    limiter = RateLimiter(rate)
    sent = 0
    await sink.start()
    try:
        async for ev in events:
            await limiter.wait()
            await sink.send(ev)
            sent += 1
            progress.add_sent()
    finally:
        progress.close()
        await sink.close()
    return sent


async def replay_kafka(
    settings: KafkaSettings,
    sel: Selection,
    sink: Sink | None,
    *,
    rate: float | None = None,
    show_progress: bool | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> tuple[int, list[PartitionRange]]:
    """Replay ``sel`` from Kafka to ``sink``; ``sink=None`` is a dry run that only counts.

    Returns (events matched, the ranges read). The dry-run report goes to ``out`` (stdout), the
    progress bar and the closing summary to ``err`` (stderr).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    async with KafkaSource(settings, sel) as src:
        ranges = await src.plan()
        progress = Progress(sum(r.size for r in ranges), label="dry run" if sink is None else "replay",
                            stream=err, enabled=show_progress)
        if sink is None:
            async for _ev in src.events(progress):
                progress.add_sent()
            progress.close()
        else:
            await deliver(src.events(progress), sink, rate=rate, progress=progress)
    matched = sum(r.matched for r in ranges)
    invalid = sum(r.invalid for r in ranges)
    if sink is None:
        print("DRY RUN: nothing was sent. The event count comes from reading every range below", file=out)
        print("(a partition's read stops early at the first record created after to + slack).", file=out)
        print(describe_selection(sel), file=out)
        if src.missing_topics:
            print(f"topics that do not exist (no history): {', '.join(src.missing_topics)}", file=out)
        print(format_ranges(ranges, counted=True), file=out)
        print(f"matching events: {matched}" + (f" (skipped {invalid} undecodable records)" if invalid else ""),
              file=out)
    else:
        summary = ", ".join(f"{k}={v}" for k, v in sink.summary().items())
        print(f"replayed {matched} events ({summary}); read {sum(r.scanned for r in ranges)} records"
              + (f", skipped {invalid} undecodable" if invalid else ""), file=err)
    return matched, ranges
