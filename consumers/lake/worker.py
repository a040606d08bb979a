"""The telemetry worker: ``data``, ``state``, ``connectivity`` and ``vehicle_data`` into the lake.

Each table is its own exactly-once sink (``consumers.lake.sink``) storing the offsets of the topics
it consumes; the worker's ``checkpoint`` flushes the tables that are due (``commit_rows`` rows or
``commit_interval_s`` seconds, or always when forced by a revocation or shutdown) and reports to the
runtime the offsets now stored in the tables, which it then commits to Kafka (advisory: on
assignment the worker seeks to the tables' offsets).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from aiokafka.structs import TopicPartition

from consumers.lake.settings import LakeSettings
from consumers.lake.sink import TableSink
from consumers.lake.tables import TABLES, ensure_tables, open_catalog
from consumers.runtime import Failure, Offsets, RetryableError, Worker, WorkerRecord
from plumbing import metrics

log = logging.getLogger("consumers.lake")
_GC_YOUNG = 20_000  # allocations between young collections (default 700)


_gc_users: list[tuple[int, int, int]] = []  # the thresholds before, once per worker started in this process


def tune_gc_for_batches() -> None:
    """Collect garbage the way a batch worker needs (undone by ``restore_gc`` when the last worker of
    the process stops).

    The decoded records of a batch live until its rows are built; with the default thresholds they
    reach the old generations and every full collection walks the whole heap (pyiceberg, pyarrow, the
    catalog): ~10 µs per event. The start-up heap is frozen out of collections and young collections
    wait for 20,000 allocations (a batch's records are gone by then)."""
    before = gc.get_threshold()
    _gc_users.append(before)
    gc.collect()
    gc.freeze()
    if len(_gc_users) == 1:
        gc.set_threshold(_GC_YOUNG, *before[1:])


def restore_gc() -> None:
    if not _gc_users:
        return
    first = _gc_users[0]  # what the process had before the first worker started
    _gc_users.pop()
    if not _gc_users:
        gc.set_threshold(*first)
        gc.unfreeze()


class TelemetryWorker(Worker):
    name = "telemetry"
    event_types = ("data", "state", "connectivity", "vehicle_data")

    def __init__(self, settings: LakeSettings) -> None:
        self.settings = settings
        self.group_id = settings.group_for(self.name)
        self.sinks: dict[str, TableSink] = {}
        self._by_topic: dict[str, TableSink] = {}
        self._gc_tuned = False

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"catalog": s.catalog_uri, "warehouse": s.warehouse, "namespace": s.namespace,
                "commit_rows": s.commit_rows, "commit_interval_s": s.commit_interval_s,
                "keep_snapshots": s.keep_snapshots, "row_builder": s.row_builder}

    async def start(self) -> None:
        await asyncio.to_thread(self._open)
        self._tune_gc()

    async def stop(self) -> None:
        if self._gc_tuned:
            restore_gc()
            self._gc_tuned = False

    def _tune_gc(self) -> None:
        tune_gc_for_batches()
        self._gc_tuned = True

    def _open(self) -> None:
        from schemas.topics import topic_for

        s = self.settings
        catalog = open_catalog(s)
        tables = ensure_tables(catalog, s.namespace)
        for tdef in TABLES:
            topics = [topic_for(t, s.topic_prefix) for t in tdef.event_types]
            sink = TableSink(
                tdef, catalog, s.namespace, tables[tdef.name], self.group_id, topics,
                commit_rows=s.commit_rows, commit_interval_s=s.commit_interval_s,
                dedup_max_ids=s.dedup_max_ids, dedup_days=s.dedup_cache_days, commit_attempts=s.commit_attempts,
                keep_snapshots=s.keep_snapshots, native=s.row_builder == "native",
            )
            self.sinks[tdef.name] = sink
            for topic in topics:
                self._by_topic[topic] = sink

    async def handle(self, batch: list[WorkerRecord]) -> list[Failure]:
        groups: dict[str, list[WorkerRecord]] = {}
        failures: list[Failure] = []
        for rec in batch:
            sink = self._by_topic.get(rec.topic)
            if sink is None:
                failures.append(Failure(rec, f"no lake table for topic {rec.topic}", "RoutingError"))
                continue
            groups.setdefault(sink.tdef.name, []).append(rec)

        def work() -> tuple[list[Failure], int]:
            out: list[Failure] = []
            dups = 0
            for name, recs in groups.items():
                f, d = self.sinks[name].add(recs)
                out.extend(f)
                dups += d
            return out, dups

        more, dups = await asyncio.to_thread(work)
        if dups:
            metrics.WORKER_DUPLICATES.labels(self.name).inc(dups)
        return failures + more

    async def checkpoint(self, offsets: Offsets, *, force: bool) -> Offsets | None:
        for sink in self.sinks.values():
            sink.note_offsets(offsets)
        due = [s for s in self.sinks.values() if s.due(force)]
        if due:
            errors = await asyncio.to_thread(self._flush, due)
            if errors and force:
                raise RetryableError("; ".join(errors))
        durable: Offsets = {}
        for sink in self.sinks.values():
            durable.update({tp: off for tp, off in sink.durable.items() if tp in offsets})
        return durable

    def _flush(self, sinks: list[TableSink]) -> list[str]:
        errors: list[str] = []
        for sink in sinks:
            t0 = time.perf_counter()
            try:
                n = sink.flush()
            except RetryableError as exc:
                log.warning("lake commit failed, kept for the next checkpoint",
                            extra={"table": sink.tdef.name, "error": str(exc)})
                errors.append(str(exc))
                continue
            log.debug("lake commit", extra={"table": sink.tdef.name, "rows": n,
                                             "seconds": round(time.perf_counter() - t0, 4)})
        return errors

    async def positions(self, assigned: set[TopicPartition]) -> Offsets | None:
        def load() -> Offsets:
            out: Offsets = {}
            for sink in self.sinks.values():
                out.update(sink.load_positions(assigned))
            return out

        return await asyncio.to_thread(load)

    async def on_revoked(self, partitions: set[TopicPartition]) -> None:
        for sink in self.sinks.values():
            sink.forget(partitions)
