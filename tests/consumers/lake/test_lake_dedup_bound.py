"""The lake's dedup index stays within ``--dedup-max-ids`` while far more distinct events pass
through, and still catches every redelivery exactly: of evicted hours (reloaded from the table), of
an hour larger than the bound (confirmed against the table), within a batch and within the buffer.
A real Iceberg table (SQLite catalog); no Kafka needed for the sink itself."""

from __future__ import annotations

import random
from pathlib import Path

from aiokafka.structs import TopicPartition

from consumers.lake.dedup import HOUR_MS
from consumers.lake.settings import LakeSettings
from consumers.lake.sink import TableSink
from consumers.lake.tables import TABLES_BY_NAME, ensure_tables, open_catalog
from consumers.runtime import WorkerRecord
from plumbing import metrics
from schemas.envelope import Envelope
from tests.support.events import BASE_MS, data_event
from tests.support.lake import VINS, raw_counts

BOUND = 120


def _events(hour: int, n: int) -> list[Envelope]:
    """``n`` distinct data events (two fields each) spread over one hour of created_at."""
    t0 = BASE_MS + hour * HOUR_MS
    return [data_event(VINS[i % 3], t0 + i * (HOUR_MS // n), {"Soc": float(i), "Odometer": 10.0 + i})
            for i in range(n)]


def _gauge() -> float:
    return metrics.REGISTRY.get_sample_value("tpipe_lake_dedup_index_ids", {"table": "telemetry"}) or 0.0


def _table_checks() -> float:
    return metrics.REGISTRY.get_sample_value("tpipe_lake_dedup_table_checks_total", {"table": "telemetry"}) or 0.0


def test_index_stays_bounded_and_redeliveries_are_caught_exactly(tmp_path: Path) -> None:
    s = LakeSettings(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh"), topic_prefix="z",
                     dedup_max_ids=BOUND)
    cat = open_catalog(s)
    ensure_tables(cat, s.namespace)
    sink = TableSink(TABLES_BY_NAME["telemetry"], cat, s.namespace, cat.load_table(("lake", "telemetry")),
                     "g", ["z.data"], commit_rows=10**6, commit_interval_s=60, dedup_days=4,
                     dedup_max_ids=s.dedup_max_ids, commit_attempts=3)
    tp = TopicPartition("z.data", 0)
    offset = 0
    largest = 0

    def feed(envs: list[Envelope], chunk: int = 30) -> int:
        """Through the sink in batches, a commit after each; returns the duplicates it skipped."""
        nonlocal offset, largest
        dups = 0
        for i in range(0, len(envs), chunk):
            recs = [WorkerRecord(e, "z.data", 0, offset + j, None, e.to_json()) for j, e in enumerate(envs[i:i + chunk])]
            offset += len(recs)
            failures, d = sink.add(recs)
            assert failures == []
            dups += d
            sink.note_offsets({tp: offset})
            sink.flush()
            largest = max(largest, sink.index.size)
            assert _gauge() == sink.index.size
        return dups

    # 6 hours of 60 events (360 distinct, three times the bound), then one hour of 200 (above it)
    hours = [_events(h, 60) for h in range(6)]
    big = _events(6, 200)
    first = [e for h in hours for e in h] + big
    checks0 = _table_checks()
    assert feed(first) == 0
    assert largest <= BOUND
    assert sink.index.size <= BOUND

    # redeliveries of every 7th event of every hour (evicted hours reload, the big one is confirmed
    # against the table), mixed with new events and with copies inside one batch
    random.seed(18)
    again = first[::7]
    new = _events(7, 40)
    mixed = again + new + new[:5]
    random.shuffle(mixed)
    dups = feed(mixed, chunk=45)
    assert dups == len(again) + 5
    assert largest <= BOUND
    assert _table_checks() > checks0  # the hour of 200 went through the table check

    total = len(first) + len(new)
    assert raw_counts(s)["telemetry"] == (2 * total, 2 * total)  # two fields each, every row distinct
