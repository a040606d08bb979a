"""Soak: millions of events through one telemetry worker, its memory sampled (issue 18, point 6).

    python -m bench.soak_lake --events 10000000 --out docs/img/soak-lake   # writes .json and .png

A local broker (``localbroker``) gets ``--events`` distinct ``data`` events (5 fields, ``--vins``
vehicles, created_at spread over ``--days`` days so hours of the dedup index roll over and get
evicted) plus redeliveries: 1 % of a recent event (50 events back) and 0.1 % of an event
``--old-dup-hours`` back in event time, beyond what the index holds (its hour is reloaded from the
table). Two producer processes fill the topic first; then ``tpipe consume telemetry`` (a real
process, ``--dedup-max-ids``) drains it while its RSS (/proc) and its metrics are sampled every
``--every`` seconds. Halfway, the worker is stopped (SIGTERM: a rebalance for its group) and a new
one started: the time from its start to its first lake commit is the restart time. At the end the
lake is checked: rows = 5 × distinct events, no duplicate (event_id, field), duplicates counted =
redeliveries. Prints one JSON object; not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_METRIC = r'^{name}\{{{labels}\}} ([0-9.e+]+)'


def _event(i: int, step_ms: int, vins: int) -> bytes:
    ms = T0_MS + i * step_ms
    k = i // vins
    return orjson.dumps({
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z",
        "vin": f"5YJ3SOAK{i % vins:09d}",
        "data": {"Soc": float(k % 100), "Odometer": 1000.0 + k * 0.1, "VehicleSpeed": float(k % 90),
                 "Gear": "ShiftStateD", "Location": {"latitude": 37.0 + (k % 1000) / 1e4,
                                                    "longitude": -122.0 - (k % 1000) / 1e4}},
    })


def _plan(i: int, old_back: int) -> list[int]:
    """The event indexes sent at step ``i``: the event, sometimes a redelivery of an earlier one."""
    out = [i]
    if i % 100 == 99 and i >= 50:
        out.append(i - 50)
    if i % 1000 == 999 and i >= old_back:
        out.append(i - old_back)
    return out


def _produce(bootstrap: str, prefix: str, lo: int, hi: int, step_ms: int, vins: int, old_back: int) -> None:
    from plumbing import kafka_clients
    from plumbing.settings import KafkaSettings
    from schemas import topics
    from schemas.parse import parse_body

    settings = KafkaSettings(kafka=bootstrap, topic_prefix=prefix)

    async def run() -> None:
        producer = kafka_clients.make_producer(settings, role="soak-producer")
        await producer.start()
        now = int(time.time() * 1000)
        try:
            pending = []
            for i in range(lo, hi):
                for j in _plan(i, old_back):
                    for env in parse_body(_event(j, step_ms, vins), received_at_ms=now):
                        pending.append(await producer.send(
                            topics.topic_for(env.type, prefix), value=env.to_json(), key=topics.key_for(env),
                            headers=topics.headers_for(env), timestamp_ms=env.created_at_ms))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(run())


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _metrics(port: int, worker: str = "telemetry") -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            body = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for key, name, labels in (
        ("handled", "tpipe_worker_records_processed_total", f'worker="{worker}"'),
        ("committed", "tpipe_lake_events_committed_total", 'table="telemetry"'),
        ("duplicates", "tpipe_worker_duplicates_total", f'worker="{worker}"'),
        ("index_ids", "tpipe_lake_dedup_index_ids", 'table="telemetry"'),
        ("table_checks", "tpipe_lake_dedup_table_checks_total", 'table="telemetry"'),
    ):
        m = re.search(_METRIC.format(name=name, labels=labels), body, re.M)
        if m:
            out[key] = float(m.group(1))
    lags = re.findall(r'^tpipe_worker_lag_records\{[^}]*\} ([0-9.e+]+)', body, re.M)
    if lags:
        out["lag"] = sum(float(v) for v in lags)
    return out


class Worker:
    def __init__(self, a: argparse.Namespace, bootstrap: str, prefix: str, lake: Path, port: int, n: int) -> None:
        cmd = [PY, "-m", "tpipe.cli", "--log-level", "warning", "consume", "telemetry", "--kafka", bootstrap, "--topic-prefix", prefix,
               "--catalog-uri", f"sqlite:///{lake}/catalog.db", "--warehouse", str(lake / "wh"),
               "--metrics-port", str(port), "--metrics-addr", "127.0.0.1", "--dedup-max-ids", str(a.dedup_max_ids)]
        self.port = port
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=open(lake / f"worker{n}.log", "ab"), stderr=subprocess.STDOUT,
                                     cwd=ROOT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _check(lake: Path) -> dict[str, int]:
    import duckdb

    from consumers.lake.settings import LakeCatalogSettings
    from consumers.lake.tables import open_catalog

    tbl = open_catalog(LakeCatalogSettings(catalog_uri=f"sqlite:///{lake}/catalog.db", warehouse=str(lake / "wh"))
                       ).load_table(("lake", "telemetry"))
    files = [t.file.file_path.removeprefix("file://") for t in tbl.scan().plan_files()]
    con = duckdb.connect()
    con.execute("SET threads = 1")
    rows, keys, events = con.execute(
        "SELECT count(*), count(DISTINCT (event_id, field)), count(DISTINCT event_id) FROM read_parquet($f)",
        {"f": files}).fetchone()  # type: ignore[misc]
    return {"rows": rows, "distinct_event_field": keys, "distinct_events": events,
            "parquet_bytes": sum(Path(f).stat().st_size for f in files)}


def _plot(samples: list[dict[str, Any]], restart_at: float | None, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    xs = [s["handled_total"] / 1e6 for s in samples]
    ax.plot(xs, [s["rss_mb"] for s in samples], color="tab:blue", label="worker RSS (MB)")
    ax.set_xlabel("events handled (millions)")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(0, max(s["rss_mb"] for s in samples) * 1.25)
    ax2 = ax.twinx()
    ax2.plot(xs, [s.get("index_ids", 0) / 1e6 for s in samples], color="tab:orange", lw=1,
             label="dedup index (million ids)")
    ax2.set_ylabel("dedup index (million ids, 16 B each)")
    ax2.set_ylim(0, max(s.get("index_ids", 0) for s in samples) / 1e6 * 1.25 + 0.01)
    if restart_at is not None:
        ax.axvline(restart_at / 1e6, color="grey", ls="--", lw=1)
        ax.text(restart_at / 1e6, ax.get_ylim()[1] * 0.95, " restart", color="grey", va="top")
    lines = ax.get_lines()[:1] + ax2.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak_lake", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--vins", type=int, default=1000)
    ap.add_argument("--days", type=float, default=4.0, help="event time the stream spans")
    ap.add_argument("--dedup-max-ids", type=int, default=2_000_000)
    ap.add_argument("--old-dup-hours", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    ap.add_argument("--timeout-s", type=float, default=7200)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "soak-lake")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args(argv)

    from localbroker import LocalBroker, free_port

    work = a.workdir or Path(tempfile.mkdtemp(prefix="tpipe-soak-"))
    lake = work / "lake"
    lake.mkdir(parents=True, exist_ok=True)
    step_ms = max(1, int(a.days * 86_400_000 / a.events))
    old_back = int(a.old_dup_hours * 3_600_000 / step_ms)
    broker = LocalBroker(data_dir=work / "kafka").start()
    result: dict[str, Any] = {"events": a.events, "vins": a.vins, "dedup_max_ids": a.dedup_max_ids,
                              "step_ms": step_ms, "workdir": str(work)}
    try:
        prefix = "soak"
        from plumbing import kafka_clients
        from plumbing.settings import KafkaSettings
        from schemas import topics

        settings = KafkaSettings(kafka=broker.bootstrap, topic_prefix=prefix, topic_partitions=3)
        asyncio.run(kafka_clients.ensure_topics(settings, topics.all_topics(prefix)))
        sent = sum(len(_plan(i, old_back)) for i in range(a.events))
        result["sent"] = sent
        result["redeliveries"] = sent - a.events
        t = time.monotonic()
        half = a.events // 2
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_produce, args=(broker.bootstrap, prefix, lo, hi, step_ms, a.vins, old_back))
                 for lo, hi in ((0, half), (half, a.events))]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            if p.exitcode:
                raise SystemExit(f"producer failed: {p.exitcode}")
        result["produce_s"] = round(time.monotonic() - t, 1)
        print(f"produced {sent} records in {result['produce_s']} s", file=sys.stderr)

        port = free_port()
        w = Worker(a, broker.bootstrap, prefix, lake, port, 1)
        samples: list[dict[str, Any]] = []
        base = 0.0  # handled by the first worker (the second one's counters start at 0)
        restart_at: float | None = None
        restart: dict[str, Any] = {}
        t_start = time.monotonic()
        deadline = t_start + a.timeout_s
        while time.monotonic() < deadline:
            time.sleep(a.every)
            if w.proc.poll() is not None:
                raise SystemExit(f"worker exited rc={w.proc.returncode}; see {lake}")
            m = _metrics(w.port)
            rss = _rss_mb(w.proc.pid)
            if rss is None or not m:
                continue
            handled = base + m.get("handled", 0)
            samples.append({"t": round(time.monotonic() - t_start, 1), "rss_mb": round(rss, 1),
                            "handled_total": handled, **m})
            if restart and "first_commit_s" not in restart and m.get("committed", 0) > 0:
                restart["first_commit_s"] = round(time.monotonic() - w.started, 2)
                print(f"restart: first commit {restart['first_commit_s']} s after start", file=sys.stderr)
            if restart_at is None and handled >= sent / 2:
                t_stop = time.monotonic()
                w.stop()
                restart["stop_s"] = round(time.monotonic() - t_stop, 2)
                restart_at = handled
                base = handled
                w = Worker(a, broker.bootstrap, prefix, lake, port, 2)
            if len(samples) % 30 == 1:
                print(json.dumps(samples[-1]), file=sys.stderr)
            idle = len(samples) > 1 and samples[-2]["handled_total"] == handled
            if restart_at is not None and m.get("lag", 1) == 0 and idle:
                break
        elapsed = time.monotonic() - t_start
        w.stop()
        result["restart"] = restart
        result["seconds"] = round(elapsed, 1)
        busy = next((x["t"] for x in samples if x["handled_total"] >= samples[-1]["handled_total"]), elapsed)
        result["events_per_s"] = round(sent / busy)  # records read (events + redeliveries) per second
        result["samples"] = samples
        warm = [s["rss_mb"] for s in samples if s["handled_total"] >= 0.2 * sent]
        result["rss_mb"] = {"max": max(s["rss_mb"] for s in samples),
                            "after_warmup_min": min(warm) if warm else None,
                            "after_warmup_max": max(warm) if warm else None}
        result["index_ids_max"] = max(s.get("index_ids", 0) for s in samples)
        before = [x for x in samples if restart_at is not None and x["handled_total"] <= restart_at]
        result["duplicates_counted"] = samples[-1].get("duplicates", 0) + (before[-1].get("duplicates", 0) if before else 0)
        result["lake"] = _check(lake)
    finally:
        broker.cleanup()
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if result.get("samples"):
        title = (f"tpipe consume telemetry: {a.events / 1e6:g} M events ({result['redeliveries']} redeliveries), "
                 f"--dedup-max-ids {a.dedup_max_ids:,}; {result['events_per_s']} events/s")
        _plot(result["samples"], restart_at, a.out.with_suffix(".png"), title)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
