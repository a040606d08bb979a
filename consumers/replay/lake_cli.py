"""``tpipe lake replay``: the replay selection and targets, read from the lake's Iceberg tables.

``replay_lake`` returns data (``LakePlan``: per table the rows read and the events rebuilt) and
prints nothing; ``render_lake_plan`` is the CLI's rendering."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from consumers.command import run_command
from consumers.replay.arguments import add_selection_arguments, selection_from_args, sink_from_args
from consumers.replay.progress import Progress
from consumers.replay.selection import ReplayEvent, Selection
from consumers.replay.sinks import Sink
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.output import emit, emit_json
from plumbing.progress import ProgressListener
from plumbing.settings import KafkaSettings

__all__ = ["LakePlan", "register_lake", "render_lake_plan", "replay_lake"]


async def _aiter(events: Iterable[ReplayEvent]) -> AsyncIterator[ReplayEvent]:
    for ev in events:
        yield ev


@dataclass
class LakePlan:
    """What a lake replay read (or, for a dry run, would send)."""

    selection: Selection
    events: int = 0
    tables: list[dict[str, Any]] = field(default_factory=list)  # table, rows_read, events, by_type
    not_in_lake: list[str] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)
    sent: int | None = None
    sink_summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from consumers.replay.engine import selection_dict

        return {"dry_run": self.sent is None, "selection": selection_dict(self.selection, slack=False),
                "not_in_lake": self.not_in_lake, "missing_tables": self.missing_tables, "tables": self.tables,
                "events": self.events, "sent": self.sent,
                **({"target": self.sink_summary} if self.sink_summary else {})}


async def replay_lake(
    catalog_settings: Any,
    sel: Selection,
    sink: Sink | None,
    *,
    rate: float | None = None,
    show_progress: bool | None = None,
    err: TextIO | None = None,
    on_progress: ProgressListener | None = None,
) -> LakePlan:
    """Replay ``sel`` from the lake to ``sink`` (None: a dry run, count only); ``on_progress(done, total,
    sent)`` receives the progress bar's numbers (events rebuilt of those selected, events sent)."""
    from consumers.replay.engine import deliver
    from consumers.replay.lake_source import LakeSource

    src = LakeSource(catalog_settings, sel)
    total = await asyncio.to_thread(src.load)
    plan = LakePlan(
        sel, events=total, not_in_lake=[t.value for t in src.not_in_lake], missing_tables=list(src.missing_tables),
        tables=[{"table": c.table, "rows_read": c.rows, "events": c.events, "by_type": dict(sorted(c.by_type.items()))}
                for c in src.counts.values()],
    )
    if sink is None:
        return plan
    progress = Progress(total, label="lake replay", stream=err, enabled=show_progress, unit="ev",
                        on_update=on_progress)
    events = src.events()

    def counted() -> Iterable[ReplayEvent]:
        for ev in events:
            progress.scanned()
            yield ev

    plan.sent = await deliver(_aiter(counted()), sink, rate=rate, progress=progress)
    plan.sink_summary = sink.summary()
    return plan


def render_lake_plan(plan: LakePlan, *, fmt: str = "table", out: TextIO | None = None,
                     err: TextIO | None = None) -> None:
    from consumers.replay.engine import describe_selection

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if plan.sent is not None:
        if plan.not_in_lake:
            print(f"note: not kept in the lake, skipped: {', '.join(plan.not_in_lake)}", file=err)
        summary = ", ".join(f"{k}={v}" for k, v in plan.sink_summary.items())
        print(f"replayed {plan.sent} events from the lake ({summary})", file=err)
        return
    if fmt == "json":
        emit_json(plan.to_dict(), out)
        return
    rows = [{**t, "by_type": ", ".join(f"{k}={v}" for k, v in t["by_type"].items()) or "-"} for t in plan.tables]
    if fmt == "csv":
        emit(["table", "rows_read", "events", "by_type"], rows, fmt="csv", out=out)
        return
    print("DRY RUN (lake): nothing was sent. Counts come from reading the selected rows.", file=out)
    print(describe_selection(plan.selection, slack=False), file=out)
    if plan.not_in_lake:
        print(f"not kept in the lake (replay them from Kafka): {', '.join(plan.not_in_lake)}", file=out)
    if plan.missing_tables:
        print(f"lake tables that do not exist yet: {', '.join(plan.missing_tables)}", file=out)
    out.flush()
    emit(["table", "rows_read", "events", "by_type"], rows, out=out)
    print(f"matching events: {plan.events}", file=out)


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
        from consumers.lake.readonly import describe_lake, open_lake
        from consumers.stores import announce_store

        catalog_settings = settings_from_args(args.lake_settings_cls, args)
        sink = sink_from_args(args, settings_from_args(KafkaSettings, args))
        sel = selection_from_args(args)
        open_lake(catalog_settings)  # a missing lake is an error before anything is sent
        announce_store("lake", describe_lake(catalog_settings))
        plan = asyncio.run(replay_lake(catalog_settings, sel, sink, rate=args.rate, show_progress=args.progress))
        render_lake_plan(plan, fmt=args.format)

    return run_command("lake replay", body)
