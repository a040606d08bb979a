"""One Iceberg table as an exactly-once Kafka sink: buffer, dedup, commit with offsets.

Exactly-once (per table):

* Every append carries, in its snapshot summary, ``tpipe.kafka-offsets.<group>`` = JSON
  ``{topic: {partition: next_offset}}`` for the partitions of the table's topics this writer holds.
  Data and offsets land in one atomic catalog commit.
* The stored position of a partition is the value in the newest snapshot that mentions it
  (``consumers.lake.snapshots``). On assignment the worker seeks there. Once the table holds twice
  ``keep_snapshots`` snapshots, the sink expires those beyond the newest ``keep_snapshots`` that no
  stored offset needs (a commit's cost grows with the snapshots in the metadata).
* ``commit.retry.num-retries=0`` on the table. Before every attempt the sink re-reads the stored
  offsets of the table version it is about to commit onto, drops the buffered rows below them and
  the offsets not ahead of them; on ``CommitFailedException`` it reloads the table and tries again.
  A stale writer (a "zombie" that lost its partitions) therefore never appends what the new owner
  already committed.

Dedup (a redelivered webhook: same event_id at another offset):

* within the buffer (the pending event_ids), and
* against the table: ``consumers.lake.dedup.HourIndex`` holds the complete event_ids of recently
  touched hours of ``created_at`` as 16-byte keys, at most ``dedup_max_ids`` of them (memory bounded
  by configuration, not by traffic); an hour not held is loaded from the table on first touch, an hour
  larger than the bound is checked against the table batch by batch. Duplicates share ``created_at``
  (it is part of the event_id), so one hour's ids are the whole check. The index is dropped on every
  assignment and on a commit conflict (another writer may have added rows). The read side
  (``consumers.lake.query``) dedupes again, as the final guarantee.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
from aiokafka.structs import TopicPartition
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from consumers.lake.arrow_buffer import ArrowBuffer
from consumers.lake.dedup import HOUR_MS, HourIndex
from consumers.lake.rows import SHAPES
from consumers.lake.snapshots import encode_offsets, expire_snapshots, offsets_key, stored_offsets
from consumers.lake.tables import TableDef
from consumers.lake.writer import append_days
from consumers.runtime import Failure, Offsets, RetryableError, WorkerRecord
from plumbing import metrics

log = logging.getLogger("consumers.lake")

class TableSink:
    """Buffer + exactly-once commit for one table. Synchronous: the worker runs it in a thread."""

    def __init__(
        self,
        tdef: TableDef,
        catalog: Catalog,
        namespace: str,
        table: Table,
        group_id: str,
        topics: Iterable[str],
        *,
        commit_rows: int,
        commit_interval_s: float,
        dedup_days: int,
        commit_attempts: int,
        dedup_max_ids: int = 10_000_000,
        keep_snapshots: int = 0,
        native: bool = True,
    ) -> None:
        self.tdef = tdef
        self.catalog = catalog
        self.ident = (namespace, tdef.name)
        self.table = table
        self.group_id = group_id
        self.topics = frozenset(topics)
        self.commit_rows = commit_rows
        self.commit_interval_s = commit_interval_s
        self.commit_attempts = commit_attempts
        self.keep_snapshots = keep_snapshots
        self.index = HourIndex(dedup_max_ids, max_hours=24 * dedup_days)
        self.buffer = ArrowBuffer(tdef.name, SHAPES[tdef.name], native=native)
        self._pending: dict[str, int] = {}  # event_id -> hour of created_at, not yet committed
        self.offsets: Offsets = {}  # handled next offsets of this table's partitions
        self.durable: Offsets = {}  # next offsets stored in the table
        self._dirty_since: float | None = None
        self.commits = 0

    # --- intake ------------------------------------------------------------------------------
    def add(self, records: list[WorkerRecord]) -> tuple[list[Failure], int]:
        """Buffer the rows of ``records``; returns (failures, duplicates skipped)."""
        pending = self._pending
        batch: set[str] = set()
        cand: list[WorkerRecord] = []
        for rec in records:  # copies already buffered, or twice in this batch
            eid = rec.envelope.event_id
            if eid in pending or eid in batch:
                continue
            batch.add(eid)
            cand.append(rec)
        hours = np.fromiter((r.envelope.created_at_ms // HOUR_MS for r in cand), dtype=np.int64, count=len(cand))
        eids = [r.envelope.event_id for r in cand]
        try:
            seen = self.index.seen(self.table, hours, eids)
        except Exception as exc:  # the table could not be read: not the record's fault
            raise RetryableError(f"dedup lookup in {self.tdef.name} failed: {exc!r}") from exc
        self._index_metrics()
        fresh: list[WorkerRecord] = []
        for rec, eid, hour, dup in zip(cand, eids, hours.tolist(), seen.tolist(), strict=True):
            if not dup:
                fresh.append(rec)
                pending[eid] = hour
        failures = self.buffer.add_batch(fresh)  # what the lake cannot represent is dead-lettered
        for f in failures:
            pending.pop(f.record.envelope.event_id, None)
        if pending:
            self._touch()
        return failures, len(records) - len(fresh)

    def _index_metrics(self) -> None:
        metrics.LAKE_DEDUP_INDEX_IDS.labels(self.tdef.name).set(self.index.size)
        checks = self.index.table_checks
        if checks:
            metrics.LAKE_DEDUP_TABLE_CHECKS.labels(self.tdef.name).inc(checks)
            self.index.table_checks = 0

    def note_offsets(self, offsets: Offsets) -> None:
        """Take the runtime's handled positions for this table's partitions."""
        for tp, off in offsets.items():
            if tp.topic in self.topics:
                self.offsets[tp] = off
                if off > self.durable.get(tp, -1):
                    self._touch()

    def _touch(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()

    def due(self, force: bool) -> bool:
        if self._dirty_since is None:
            return False
        if force or len(self.buffer) >= self.commit_rows:
            return True
        return time.monotonic() - self._dirty_since >= self.commit_interval_s

    # --- commit ------------------------------------------------------------------------------
    def _day_tables(self) -> list[tuple[int, pa.Table]]:
        # the table's own schema (its field ids), which may hold columns added by a newer version
        return self.buffer.day_tables(self.table.schema().as_arrow(), sort_by=("vin", "created_at"))

    def flush(self) -> int:
        """Commit the buffer with its offsets. Returns rows committed; raises ``RetryableError``."""
        if self._dirty_since is None:
            return 0
        key = offsets_key(self.group_id)
        last_exc: Exception | None = None
        for attempt in range(self.commit_attempts):
            stored = stored_offsets(self.table, self.group_id, self.offsets)
            floor = {(tp.topic, tp.partition): off for tp, off in stored.items()}
            dropped = self.buffer.drop_below(floor)
            if dropped:
                log.warning("dropping rows another writer already committed",
                            extra={"table": self.tdef.name, "dropped": dropped})
            ahead = {tp: off for tp, off in self.offsets.items() if off > stored.get(tp, -1)}
            if not ahead:  # everything (if anything) is already in the table
                self._done(stored)
                return 0
            try:
                events = self.buffer.events
                rows = append_days(self.table, self._day_tables(), {key: encode_offsets(ahead)})
            except CommitFailedException as exc:
                last_exc = exc
                log.warning(
                    "lake commit conflict, reloading",
                    extra={"table": self.tdef.name, "attempt": attempt + 1, "error": str(exc)},
                )
                self.table = self.catalog.load_table(self.ident)
                self.index.clear()
                continue
            except OSError as exc:  # storage trouble: keep the buffer, try again later
                raise RetryableError(f"lake write to {self.tdef.name} failed: {exc}") from exc
            stored.update(ahead)
            self._done(stored)
            self.commits += 1
            metrics.LAKE_EVENTS_COMMITTED.labels(self.tdef.name).inc(events)
            self._expire_snapshots()
            return rows
        raise RetryableError(f"lake commit to {self.tdef.name} kept conflicting: {last_exc}")

    def _expire_snapshots(self) -> None:
        """Once the metadata holds twice ``keep_snapshots`` snapshots, expire down to about that
        many. Best effort: the data is committed already; a failure is logged and retried later."""
        keep = self.keep_snapshots
        if not keep or len(self.table.metadata.snapshots) < 2 * keep:
            return
        try:
            n = expire_snapshots(self.table, keep)
        except CommitFailedException as exc:  # another writer committed: the next append reloads
            log.info("snapshot expiry skipped", extra={"table": self.tdef.name, "error": str(exc)})
            self.table = self.catalog.load_table(self.ident)
            return
        except Exception as exc:
            log.warning("snapshot expiry failed", extra={"table": self.tdef.name, "error": repr(exc)})
            return
        log.debug("expired snapshots", extra={"table": self.tdef.name, "expired": n,
                                               "kept": len(self.table.metadata.snapshots)})

    def _done(self, stored: Offsets) -> None:
        self.durable.update(stored)
        if self._pending:
            pending = self._pending
            self.index.add(np.fromiter(pending.values(), dtype=np.int64, count=len(pending)), list(pending))
            self._index_metrics()
        self.buffer.clear()
        self._pending.clear()
        self._dirty_since = None

    # --- assignment --------------------------------------------------------------------------
    def load_positions(self, assigned: Iterable[TopicPartition]) -> Offsets:
        """Reload the table, read the stored offsets of the assigned partitions, reset caches."""
        mine = [tp for tp in assigned if tp.topic in self.topics]
        self.table = self.catalog.load_table(self.ident)
        self.index.clear()
        stored = stored_offsets(self.table, self.group_id, mine)
        self.durable = dict(stored)
        self.offsets = {tp: off for tp, off in self.offsets.items() if tp in set(mine)}
        return stored

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop buffered rows and positions of revoked partitions (their next owner re-reads them)."""
        gone = {(tp.topic, tp.partition) for tp in partitions if tp.topic in self.topics}
        if not gone:
            return
        if self.buffer.drop_partitions(gone):
            kept_ids = set(self.buffer.event_ids())
            self._pending = {e: d for e, d in self._pending.items() if e in kept_ids}
        for tp in list(self.offsets):
            if (tp.topic, tp.partition) in gone:
                self.offsets.pop(tp, None)
                self.durable.pop(tp, None)
        if not len(self.buffer) and all(self.offsets.get(tp, -1) <= self.durable.get(tp, -1) for tp in self.offsets):
            self._dirty_since = None
