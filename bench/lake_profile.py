"""Where the telemetry worker's CPU goes per event, without Kafka: the bench corpus (distinct events, as
the forwarder publishes them) decoded by the runtime's decoder and fed to the lake's ``TableSink`` in
batches, committed to a fresh SQLite catalog, with the worker's garbage-collection settings.

    python -m bench.lake_profile [--events 60000] [--batch 500] [--commit-rows 500000] [--row-builder native]

Prints one JSON object: events, seconds, CPU µs per event in total and per stage (CPU time inside the
stage's functions, timed per call; "other" is the rest: the harness loop, the sink's bookkeeping),
the commits and the rows written. ``--profile FILE`` also writes cProfile stats. Stages:

  decode     runtime decoder: value bytes -> Envelope (``orjson.loads`` + checks)
  dedup      ``TableSink.add`` minus the row building (day index, pending ids)
  rows       building the batch's rows (``ArrowBuffer.add_batch``: native or Python builder)
  sort       events sorted by (day, vin, created_at), rows following, cut per day (``ArrowBuffer.day_tables``)
  parquet    encoding and writing the data files, with their statistics (``writer._write_day``)
  commit     the Iceberg commit around them: manifests, metadata, catalog (``append_days`` minus parquet)
  expiry     snapshot expiry (``TableSink._expire_snapshots``)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.lake import distinct_records

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "events" / "bench"

class _Timers:
    """CPU seconds spent inside some functions (patched for the run; calls are per batch or per file)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, stage: str) -> None:
        fn = getattr(owner, attr)
        self.cpu.setdefault(stage, 0.0)

        def timed(*args: object, **kwargs: object) -> object:
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[stage] += time.process_time() - t0

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)


def run(events: int, batch: int, commit_rows: int, row_builder: str, profile: str | None) -> dict[str, object]:
    from aiokafka.structs import TopicPartition

    from consumers.lake import arrow_buffer, sink, writer
    from consumers.lake.settings import LakeCatalogSettings
    from consumers.lake.tables import TABLES_BY_NAME, ensure_tables, open_catalog
    from consumers.runtime import WorkerRecord
    from schemas.envelope import Envelope

    bodies = [(FIXTURES / f"data_{s}.json").read_bytes() for s in ("0.5kb", "1.5kb", "3kb")]
    values = [env.to_json() for env in distinct_records(bodies, events, 200, "prof")]
    decode = Envelope.from_json
    timers = _Timers()
    timers.wrap(sink.TableSink, "add", "sink_add")
    timers.wrap(arrow_buffer.ArrowBuffer, "add_batch", "rows")
    timers.wrap(arrow_buffer.ArrowBuffer, "day_tables", "sort")
    timers.wrap(writer, "_write_day", "parquet")
    timers.wrap(sink, "append_days", "append")
    timers.wrap(sink.TableSink, "_expire_snapshots", "expiry")
    tp = TopicPartition("prof.data", 0)
    from consumers.lake.worker import restore_gc, tune_gc_for_batches

    tune_gc_for_batches()  # as the worker does once started
    try:
        with tempfile.TemporaryDirectory(prefix="tpipe-lake-profile-") as tmp:
            cs = LakeCatalogSettings(catalog_uri=f"sqlite:///{tmp}/catalog.db", warehouse=f"{tmp}/wh")
            catalog = open_catalog(cs)
            tables = ensure_tables(catalog, cs.namespace)
            tsink = sink.TableSink(
                TABLES_BY_NAME["telemetry"], catalog, cs.namespace, tables["telemetry"], "prof", ["prof.data"],
                commit_rows=commit_rows, commit_interval_s=3600, dedup_days=4, commit_attempts=3,
                keep_snapshots=20, native=row_builder == "native",
            )
            decode_s = 0.0

            def work() -> int:
                nonlocal decode_s
                rows = 0
                for start in range(0, len(values), batch):
                    t0 = time.process_time()
                    recs = [WorkerRecord(decode(v), "prof.data", 0, start + i, None, v)
                            for i, v in enumerate(values[start : start + batch])]
                    decode_s += time.process_time() - t0
                    tsink.add(recs)
                    tsink.note_offsets({tp: start + len(recs)})
                    if tsink.due(force=False):
                        rows += tsink.flush()
                return rows + tsink.flush()

            t0, c0 = time.perf_counter(), time.process_time()
            if profile:
                prof = cProfile.Profile(time.process_time)
                rows = prof.runcall(work)
                prof.dump_stats(profile)
            else:
                rows = work()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        timers.restore()
        restore_gc()
    per = {k: v * 1e6 / events for k, v in timers.cpu.items()}
    stages = {
        "decode": decode_s * 1e6 / events,
        "dedup": per["sink_add"] - per["rows"],
        "rows": per["rows"],
        "sort": per["sort"],
        "parquet": per["parquet"],
        "commit": per["append"] - per["parquet"],
        "expiry": per["expiry"],
    }
    total = cpu * 1e6 / events
    stages["other"] = total - sum(stages.values())
    return {"events": events, "rows": rows, "commits": tsink.commits, "row_builder": row_builder,
            "batch": batch, "commit_rows": commit_rows, "wall_s": round(wall, 2),
            "cpu_us_per_event": round(total, 2),
            "stages_cpu_us_per_event": {k: round(v, 2) for k, v in stages.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--commit-rows", type=int, default=500_000)
    ap.add_argument("--row-builder", choices=("native", "python"), default="native")
    ap.add_argument("--profile", metavar="FILE", help="also write cProfile stats (CPU time) to FILE")
    a = ap.parse_args(argv)
    sys.stdout.write(json.dumps(run(a.events, a.batch, a.commit_rows, a.row_builder, a.profile)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
