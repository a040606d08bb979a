"""``tpipe lake replay``: the replay selection and targets, read from the lake's Iceberg tables."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any, TextIO

from consumers.replay.arguments import add_selection_arguments, selection_from_args, sink_from_args
from consumers.replay.progress import Progress
from consumers.replay.selection import ReplayEvent, Selection
from consumers.replay.sinks import Sink
from consumers.replay.text import run_command
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.settings import KafkaSettings

__all__ = ["register_lake", "replay_lake"]


async def _aiter(events: Iterable[ReplayEvent]) -> AsyncIterator[ReplayEvent]:
    for ev in events:
        yield ev


async def replay_lake(
    catalog_settings: Any,
    sel: Selection,
    sink: Sink | None,
    *,
    rate: float | None = None,
    show_progress: bool | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Replay ``sel`` from the lake to ``sink`` (None: dry run, count only); returns the event count."""
    from consumers.replay.engine import deliver, describe_selection
    from consumers.replay.lake_source import LakeSource

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    src = LakeSource(catalog_settings, sel)
    total = await asyncio.to_thread(src.load)
    if sink is None:
        print("DRY RUN (lake): nothing was sent. Counts come from reading the selected rows.", file=out)
        print(describe_selection(sel, slack=False), file=out)
        if src.not_in_lake:
            print(f"not kept in the lake (replay them from Kafka): {', '.join(t.value for t in src.not_in_lake)}",
                  file=out)
        if src.missing_tables:
            print(f"lake tables that do not exist yet: {', '.join(src.missing_tables)}", file=out)
        print("table          rows_read  events  by_type", file=out)
        for c in src.counts.values():
            types = ", ".join(f"{k}={v}" for k, v in sorted(c.by_type.items())) or "-"
            print(f"{c.table:<13} {c.rows:>10} {c.events:>7}  {types}", file=out)
        print(f"matching events: {total}", file=out)
        return total
    if src.not_in_lake:
        print(f"note: not kept in the lake, skipped: {', '.join(t.value for t in src.not_in_lake)}", file=err)
    progress = Progress(total, label="lake replay", stream=err, enabled=show_progress, unit="ev")
    events = src.events()

    def counted() -> Iterable[ReplayEvent]:
        for ev in events:
            progress.scanned()
            yield ev

    sent = await deliver(_aiter(counted()), sink, rate=rate, progress=progress)
    summary = ", ".join(f"{k}={v}" for k, v in sink.summary().items())
    print(f"replayed {sent} events from the lake ({summary})", file=err)
    return sent


def register_lake(lake_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``replay`` under ``tpipe lake`` (the ``tpipe`` CLI composes it with ``consumers.lake.cli``)."""
    from consumers.lake.settings import LakeCatalogSettings as settings_cls

    p = lake_sub.add_parser(
        "replay",
        help="replay history from the lake (after Kafka's retention) to a topic, a file or a webhook URL",
        description="Rebuild the events whose created_at is in [--from, --to) from the lake tables (data, state, "
                    "connectivity, vehicle_data) and send them like `tpipe replay`. Events keep their event_id.",
    )
    add_selection_arguments(p, kafka=False)
    add_settings_arguments(p, settings_cls)
    add_settings_arguments(p, KafkaSettings)
    p.set_defaults(func=_run, lake_settings_cls=settings_cls)


def _run(args: argparse.Namespace) -> int:
    def body() -> None:
        catalog_settings = settings_from_args(args.lake_settings_cls, args)
        sink = sink_from_args(args, settings_from_args(KafkaSettings, args))
        sel = selection_from_args(args)
        asyncio.run(replay_lake(catalog_settings, sel, sink, rate=args.rate, show_progress=args.progress))

    return run_command("lake replay", body)
