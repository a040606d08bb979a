"""The lake phase: one topic of distinct bench events, then, alternated in every round and each on CPU 0
with a fresh catalog and consumer group: the raw ``getmany`` loop (the baseline), ``tpipe consume
telemetry`` and, when it could be prepared, the Apache Iceberg Kafka Connect sink.

Both lake writers are measured the same way: events/s from their first commit to the commit holding
the last event, and CPU per event over that span ("after warm-up": start-up, the JVM's JIT and the first
commit's table creation excluded). tpipe's events/s from its first handled record to its last (the
figure compared with ``getmany``, whose own rate runs from its first record to its last) is reported
too. Round 0 checks that each lake holds every event exactly once.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import peers
from bench.infra import PY, ROOT, log, med, proc_cpu_s, ratio_stats, run_json

if TYPE_CHECKING:
    from bench.run import Bench

_PROCESSED = re.compile(rb'^tpipe_worker_records_processed_total\{worker="telemetry"\} ([0-9.e+]+)', re.M)
_COMMITTED = re.compile(rb'^tpipe_lake_events_committed_total\{table="telemetry"\} ([0-9.e+]+)', re.M)
POLL_S = 0.1


def phase_lake(b: Bench) -> None:
    a = b.a
    prefix = f"benchlake{b.stamp[-6:]}"
    n = a.lake_events
    log(f"lake: pre-filling {n} distinct events into {prefix}.data")
    run_json([PY, "-m", "bench.lake", "prefill", "--kafka", b.broker.bootstrap, "--prefix", prefix,
              "--events", str(n), "--bodies", *map(str, b.bodies[:3])], 1200)
    iceberg = b.peers is not None and b.peers.iceberg_libs is not None
    runs: list[dict[str, Any]] = []
    for rnd in range(a.rounds):
        r = run_json([*b.pin0, PY, "-m", "bench.lake", "raw", "--kafka", b.broker.bootstrap,
                      "--prefix", prefix, "--events", str(n)], 600)
        r.update(mode="raw", round=rnd)
        runs.append(r)
        log(f"lake round {rnd} raw getmany: {r['events_per_s']:.0f} events/s")
        w = tpipe_worker(b, prefix, n, rnd, verify=rnd == 0)
        w.update(mode="tpipe", round=rnd)
        runs.append(w)
        log(f"lake round {rnd} tpipe consume telemetry: {w['events_per_s']:.0f} events/s handled, "
            f"{w['committed_events_per_s']:.0f}/s committed, CPU {w['cpu_us_per_event_after_first_commit']:.1f} "
            f"us/event after the first commit ({w['cpu_us_per_event']:.1f} all){_verified(w)}")
        if iceberg:
            k = iceberg_sink(b, prefix, n, rnd, verify=rnd == 0)
            k.update(mode="iceberg", round=rnd)
            runs.append(k)
            log(f"lake round {rnd} Iceberg Kafka Connect sink: {k['committed_events_per_s']:.0f}/s committed, "
                f"CPU {k['cpu_us_per_event_after_first_commit']:.1f} us/event after the first commit "
                f"({k['cpu_us_per_event']:.1f} all){_verified(k)}")

    def of(mode: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["mode"] == mode]

    raw, wk = of("raw", "events_per_s"), of("tpipe", "events_per_s")
    res: dict[str, Any] = {
        "events": n, "runs": runs, "raw_median": med(raw), "worker_median": med(wk),
        "ratio": ratio_stats(list(zip(wk, raw, strict=True))),
        "worker_cpu_us_per_event_median": med(of("tpipe", "cpu_us_per_event_after_first_commit")),
        "worker_committed_median": med(of("tpipe", "committed_events_per_s")),
    }
    if iceberg:
        tc, kc = of("tpipe", "cpu_us_per_event_after_first_commit"), of("iceberg", "cpu_us_per_event_after_first_commit")
        res["iceberg"] = {
            "committed_median": med(of("iceberg", "committed_events_per_s")), "cpu_us_per_event_median": med(kc),
            "cpu_ratio": ratio_stats(list(zip(tc, kc, strict=True))),
            "committed_ratio": ratio_stats(list(zip(of("tpipe", "committed_events_per_s"),
                                                    of("iceberg", "committed_events_per_s"), strict=True))),
        }
    elif b.peers is not None:
        res["iceberg_skipped"] = b.peers.skipped.get("iceberg")
    b.res["phases"]["lake"] = res


def _verified(r: dict[str, Any]) -> str:
    v = r.get("verify")
    return f"; holds {v['distinct_event_ids']} distinct events in {v['rows']} rows" if v else ""


class _Progress:
    """Samples a writer process until ``n`` events are committed: when it handled / committed its first
    and last events and its CPU at those moments."""

    def __init__(self, pid: int, n: int) -> None:
        self.pid, self.n = pid, n
        self.t_ready: float | None = None
        self.first_handled: tuple[float, int] | None = None
        self.all_handled: float | None = None
        self.first_commit: tuple[float, int, float] | None = None  # time, events, CPU seconds
        self.done: tuple[float, float] | None = None  # time, CPU seconds

    def sample(self, handled: int | None, committed: int) -> bool:
        now = time.monotonic()
        self.t_ready = self.t_ready or now
        if handled:
            if self.first_handled is None:
                self.first_handled = (now, handled)
            if handled >= self.n and self.all_handled is None:
                self.all_handled = now
        if committed and self.first_commit is None:
            self.first_commit = (now, committed, proc_cpu_s(self.pid))
        if committed >= self.n:
            self.done = (now, proc_cpu_s(self.pid))
            return True
        return False

    def result(self, t_start: float) -> dict[str, Any]:
        assert self.first_commit is not None and self.done is not None
        n = self.n
        (t_fc, c_fc, cpu_fc), (t_end, cpu_end) = self.first_commit, self.done
        after = n - c_fc
        out: dict[str, Any] = {
            "events": n, "first_commit_events": c_fc, "wall_s": t_end - t_start,
            "committed_events_per_s": after / (t_end - t_fc) if after > 0 and t_end > t_fc else n / (t_end - t_start),
            "cpu_us_per_event": cpu_end * 1e6 / n,
            "cpu_us_per_event_after_first_commit": (cpu_end - cpu_fc) * 1e6 / after if after > 0 else None,
        }
        if self.first_handled and self.all_handled:
            (t_fh, c_fh), t_ah = self.first_handled, self.all_handled
            out["events_per_s"] = (n - c_fh) / (t_ah - t_fh) if t_ah > t_fh and n > c_fh else n / (t_ah - t_start)
            out["first_handled_events"] = c_fh
        return out


def _watch(proc: subprocess.Popen[bytes], what: str, progress: _Progress, read: Callable[[], tuple[int | None, int]],
           timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}: see {log_path}")
        try:
            handled, committed = read()
        except OSError:
            time.sleep(POLL_S)
            continue
        if progress.sample(handled, committed):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"{what} did not commit {progress.n} events in {timeout:.0f} s: see {log_path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tpipe_worker(b: Bench, prefix: str, n: int, rnd: int, verify: bool) -> dict[str, Any]:
    d = b.workdir / f"lake-{rnd}"
    d.mkdir()
    mport = b.free_port()
    cmd = [PY, "-m", "tpipe.cli", "consume", "telemetry", "--kafka", b.broker.bootstrap,
           "--topic-prefix", prefix, "--catalog-uri", f"sqlite:///{d}/catalog.db", "--warehouse", str(d / "wh"),
           "--metrics-port", str(mport), "--metrics-addr", "127.0.0.1", "--group-id", f"benchlake-{rnd}"]
    log_path = d / "worker.log"
    t_start = time.monotonic()
    proc = subprocess.Popen([*b.pin0, *cmd], stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                            env=b.clean_env(), cwd=ROOT)
    progress = _Progress(proc.pid, n)

    def read() -> tuple[int | None, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=1) as r:
            body = r.read()
        h, c = _PROCESSED.search(body), _COMMITTED.search(body)
        return int(float(h.group(1))) if h else 0, int(float(c.group(1))) if c else 0

    try:
        _watch(proc, "telemetry worker", progress, read, b.a.lake_timeout, log_path)
    finally:
        _stop(proc)
    out = progress.result(t_start)
    out["data_bytes"] = sum(f.stat().st_size for f in (d / "wh").rglob("*.parquet"))
    if verify:
        out["verify"] = tpipe_counts(f"sqlite:///{d}/catalog.db", str(d / "wh"))
    return out


def tpipe_counts(catalog_uri: str, warehouse: str) -> dict[str, int]:
    """Rows and distinct event ids of the telemetry table's current snapshot (its data files, by DuckDB)."""
    from consumers.lake.settings import LakeCatalogSettings
    from consumers.lake.tables import open_catalog

    tbl = open_catalog(LakeCatalogSettings(catalog_uri=catalog_uri, warehouse=warehouse)).load_table(
        ("lake", "telemetry"))
    return _parquet_counts([t.file.file_path for t in tbl.scan().plan_files()])


def _parquet_counts(paths: list[str]) -> dict[str, int]:
    import duckdb

    files = [p.removeprefix("file://").removeprefix("file:") for p in paths]
    con = duckdb.connect()
    try:
        rows, ids = con.execute("SELECT count(*), count(DISTINCT event_id) FROM read_parquet($files)",
                                {"files": files}).fetchall()[0]
    finally:
        con.close()
    return {"rows": int(rows), "distinct_event_ids": int(ids)}


def iceberg_sink(b: Bench, prefix: str, n: int, rnd: int, verify: bool) -> dict[str, Any]:
    assert b.peers is not None
    d = b.workdir / f"iceberg-{rnd}"
    d.mkdir()
    name = f"benchice{b.stamp[-6:]}r{rnd}"
    cmd = peers.connect_command(b.peers, d, b.broker.bootstrap, f"{prefix}.data", name, b.free_port(),
                                int(b.a.iceberg_commit_ms))
    log_path = d / "connect.log"
    t_start = time.monotonic()
    proc = subprocess.Popen([*b.pin0, *cmd], stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                            env=b.clean_env(), cwd=d)
    progress = _Progress(proc.pid, n)
    location: list[str | None] = [None]

    def read() -> tuple[int | None, int]:
        committed, location[0] = peers.connect_committed(d)
        return None, committed

    try:
        _watch(proc, "Kafka Connect (Iceberg sink)", progress, read, b.a.lake_timeout, log_path)
    finally:
        _stop(proc)
    out = progress.result(t_start)
    out["data_bytes"] = sum(f.stat().st_size for f in (d / "wh").rglob("*.parquet"))
    if verify and location[0]:
        with contextlib.suppress(Exception):
            from pyiceberg.table import StaticTable

            files = [t.file.file_path for t in StaticTable.from_metadata(location[0]).scan().plan_files()]
            out["verify"] = _parquet_counts(files)
    return out
