"""Run a replay from Kafka: resolve the ranges, then count them (dry run) or deliver to a sink.

The functions return data (``KafkaPlan``: the offset ranges, records read, distinct events,
redelivered copies left out) and print nothing; ``render_kafka_plan`` is the CLI's rendering, and
the operator console can call the same functions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from consumers.replay.kafka_source import KafkaSource, PartitionRange
from consumers.replay.progress import Progress, RateLimiter
from consumers.replay.selection import ReplayEvent, Selection
from consumers.replay.sinks import Sink
from plumbing.output import emit, emit_json
from plumbing.progress import ProgressListener
from plumbing.settings import KafkaSettings
from schemas.times import format_ms

__all__ = ["KafkaPlan", "deliver", "describe_selection", "plan_kafka", "render_kafka_plan", "replay_kafka",
           "selection_dict"]


def selection_dict(sel: Selection, *, slack: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "from": None if sel.from_ms is None else format_ms(sel.from_ms),
        "to": format_ms(sel.to_ms),
        "types": [t.value for t in sel.types],
        "vins": sorted(sel.vins),
    }
    if slack:
        out["slack_s"] = sel.slack_ms // 1000
        out["dedup_horizon_s"] = sel.dedup_horizon_ms // 1000
    return out


def describe_selection(sel: Selection, *, slack: bool = True) -> str:
    start = "the beginning" if sel.from_ms is None else format_ms(sel.from_ms)
    vins = ", ".join(sorted(sel.vins)) if sel.vins else "all"
    types = ", ".join(t.value for t in sel.types)
    window = f"window: created_at from {start} to {format_ms(sel.to_ms)} (end excluded)"
    if slack:
        window += f"; slack {sel.slack_ms // 1000}s"
    return f"{window}\nvins: {vins}\ntypes: {types}"


@dataclass
class KafkaPlan:
    """What a Kafka replay read (or, for a dry run, would send): its ranges and counts."""

    selection: Selection
    ranges: list[PartitionRange] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)
    sent: int | None = None  # events delivered (None: a dry run)
    sink_summary: dict[str, Any] = field(default_factory=dict)

    @property
    def events(self) -> int:
        """Distinct events selected: what a replay sends."""
        return sum(r.matched for r in self.ranges)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.ranges)

    @property
    def records_read(self) -> int:
        return sum(r.scanned for r in self.ranges)

    @property
    def invalid(self) -> int:
        return sum(r.invalid for r in self.ranges)

    def range_rows(self) -> list[dict[str, Any]]:
        return [
            {"topic": r.topic, "partition": r.partition, "start_offset": r.start, "end_offset": r.end,
             "stopped_at": r.stopped_at, "records_read": r.scanned, "events": r.matched,
             "duplicates": r.duplicates}
            for r in self.ranges
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.sent is None, "selection": selection_dict(self.selection),
            "missing_topics": self.missing_topics, "ranges": self.range_rows(), "events": self.events,
            "duplicates": self.duplicates, "records_in_window": self.events + self.duplicates,
            "records_read": self.records_read, "undecodable": self.invalid, "sent": self.sent,
            **({"target": self.sink_summary} if self.sink_summary else {}),
        }


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
    err: TextIO | None = None,
    on_progress: ProgressListener | None = None,
) -> KafkaPlan:
    """Replay ``sel`` from Kafka to ``sink``; ``sink=None`` is a dry run that reads and counts only.

    The progress bar (only on a terminal unless ``show_progress``) goes to ``err`` (stderr);
    ``on_progress(done, total, sent)`` receives its numbers (records read of the ranges' total, events sent)."""
    plan = KafkaPlan(sel)
    async with KafkaSource(settings, sel) as src:
        plan.ranges = await src.plan()
        plan.missing_topics = list(src.missing_topics)
        progress = Progress(sum(r.size for r in plan.ranges), label="dry run" if sink is None else "replay",
                            stream=err, enabled=show_progress, on_update=on_progress)
        if sink is None:
            async for _ev in src.events(progress):
                progress.add_sent()
            progress.close()
        else:
            plan.sent = await deliver(src.events(progress), sink, rate=rate, progress=progress)
            plan.sink_summary = sink.summary()
    return plan


async def plan_kafka(settings: KafkaSettings, sel: Selection, *, show_progress: bool | None = False,
                     on_progress: ProgressListener | None = None) -> KafkaPlan:
    """The dry run: offset ranges and exact counts (every range is read), nothing sent."""
    return await replay_kafka(settings, sel, None, show_progress=show_progress, on_progress=on_progress)


def render_kafka_plan(plan: KafkaPlan, *, fmt: str = "table", out: TextIO | None = None,
                      err: TextIO | None = None) -> None:
    """A dry run's report on ``out`` (table, json or csv); a replay's one-line summary on ``err``."""
    import sys

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if plan.sent is not None:
        summary = ", ".join(f"{k}={v}" for k, v in plan.sink_summary.items())
        dups = f", left out {plan.duplicates} redelivered copies" if plan.duplicates else ""
        bad = f", skipped {plan.invalid} undecodable" if plan.invalid else ""
        print(f"replayed {plan.sent} events ({summary}); read {plan.records_read} records{dups}{bad}", file=err)
        return
    if fmt == "json":
        emit_json(plan.to_dict(), out)
        return
    columns = ["topic", "partition", "start_offset", "end_offset", "stopped_at", "records_read", "events",
               "duplicates"]
    if fmt == "csv":
        emit(columns, plan.range_rows(), fmt="csv", out=out)
        return
    print("DRY RUN: nothing was sent. The counts come from reading every range below", file=out)
    print("(a partition's read stops early at the first record created after to + slack).", file=out)
    print(describe_selection(plan.selection), file=out)
    if plan.missing_topics:
        print(f"topics that do not exist (no history): {', '.join(plan.missing_topics)}", file=out)
    out.flush()
    emit(columns, plan.range_rows(), out=out)
    line = f"matching events: {plan.events}"
    notes = []
    if plan.duplicates:
        notes.append(f"{plan.duplicates} redelivered copies left out; {plan.events + plan.duplicates} "
                     "records in the window")
    if plan.invalid:
        notes.append(f"skipped {plan.invalid} undecodable records")
    print(line + (f" ({'; '.join(notes)})" if notes else ""), file=out)
