"""Memory check of the alerts and credits workers (issue 18, point 6): many distinct events through one
worker, its RSS sampled, to see that neither keeps per-event state in memory.

    python -m bench.soak_workers --events 300000            # both workers; prints one JSON object

A local broker gets ``--events`` distinct ``alerts`` events (one alert each, 20 names, started and
later ended, ``--vins`` vehicles) and as many ``credits`` events (a command's cost and the balance),
plus 1 % redeliveries; then ``tpipe consume alerts`` and ``tpipe consume credits`` (real processes,
SQLite, notifications to the log only) drain them one after the other while their RSS and metrics are
sampled. Reports events/s, RSS after the first 20 % and at the end, and the duplicates counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.soak_lake import PY, ROOT, T0_MS, _metrics, _rss_mb

_WORKERS = ("alerts", "credits")


def _body(kind: str, i: int, vins: int) -> bytes:
    ms = T0_MS + i * 1000
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
    vin = f"5YJ3SOAK{i % vins:09d}"
    if kind == "alerts":
        name = f"Alert_{i % 20}"
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((ms - (i % 2) * 60_000) / 1000))
        alert: dict[str, Any] = {"name": name, "audiences": ["Customer"], "startedAt": started}
        if i % 2:
            alert["endedAt"] = at
        return orjson.dumps({"createdAt": at, "vin": vin, "alerts": [alert]})
    return orjson.dumps({"createdAt": at, "vin": vin,
                         "credits": {"type": "command", "cost": 1, "name": "door_lock", "balance": 10**9 - i}})


def _produce(bootstrap: str, prefix: str, kind: str, n: int, vins: int) -> None:
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
            for i in range(n):
                for j in (i, i - 50) if i % 100 == 99 else (i,):
                    for env in parse_body(_body(kind, j, vins), received_at_ms=now):
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


def _drain(kind: str, bootstrap: str, prefix: str, work: Path, sent: int, every: float,
           timeout_s: float) -> dict[str, Any]:
    from localbroker import free_port

    port = free_port()
    cmd = [PY, "-m", "tpipe.cli", "--log-level", "warning", "consume", kind, "--kafka", bootstrap,
           "--topic-prefix", prefix, "--db-url", f"sqlite:///{work}/{kind}.db", "--metrics-port", str(port),
           "--metrics-addr", "127.0.0.1"]
    if kind == "alerts":
        cmd += ["--notify-log"]
    proc = subprocess.Popen(cmd, stdout=open(work / f"{kind}.log", "ab"), stderr=subprocess.STDOUT, cwd=ROOT)
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout_s:
            time.sleep(every)
            if proc.poll() is not None:
                raise SystemExit(f"{kind} worker exited rc={proc.returncode}; see {work}/{kind}.log")
            m = _metrics(port, worker=kind)
            rss = _rss_mb(proc.pid)
            if rss is None or not m:
                continue
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss, 1), **m})
            if m.get("handled", 0) >= sent:
                break
    finally:
        proc.terminate()
        proc.wait(60)
    first = next((s for s in samples if s.get("handled", 0) > 0), None)
    end = next((s for s in samples if s.get("handled", 0) >= sent), None)
    done = end["t"] - first["t"] if first and end and end is not first else None
    warm = [s["rss_mb"] for s in samples if s.get("handled", 0) >= 0.2 * sent]
    return {"handled": samples[-1].get("handled") if samples else 0, "seconds": done,  # first sample to last event
            "events_per_s": round((sent - first["handled"]) / done) if first and done else None,
            "duplicates": samples[-1].get("duplicates") if samples else None,
            "rss_mb_after_20pct": warm[0] if warm else None, "rss_mb_end": warm[-1] if warm else None,
            "rss_mb_max": max((s["rss_mb"] for s in samples), default=None),
            "rss_mb_samples": [(s.get("handled"), s["rss_mb"]) for s in samples]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak_workers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--vins", type=int, default=1000)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--timeout-s", type=float, default=3600)
    ap.add_argument("--workers", nargs="+", choices=_WORKERS, default=list(_WORKERS))
    a = ap.parse_args(argv)

    from localbroker import LocalBroker
    from plumbing import kafka_clients
    from plumbing.settings import KafkaSettings
    from schemas import topics

    work = Path(tempfile.mkdtemp(prefix="tpipe-soakw-"))
    broker = LocalBroker(data_dir=work / "kafka").start()
    prefix = "soakw"
    out: dict[str, Any] = {"events": a.events}
    try:
        settings = KafkaSettings(kafka=broker.bootstrap, topic_prefix=prefix, topic_partitions=3)
        asyncio.run(kafka_clients.ensure_topics(settings, topics.all_topics(prefix)))
        sent = a.events + a.events // 100
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_produce, args=(broker.bootstrap, prefix, k, a.events, a.vins))
                 for k in a.workers]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        for kind in a.workers:
            out[kind] = _drain(kind, broker.bootstrap, prefix, work, sent, a.every, a.timeout_s)
            print(json.dumps({kind: {k: v for k, v in out[kind].items() if k != "rss_mb_samples"}}),
                  file=sys.stderr)
    finally:
        broker.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
