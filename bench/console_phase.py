"""The console phase: every page of ``tpipe console`` timed over HTTP with a lake of 1 million
telemetry rows (``--console-rows``), issue 17's "each page under 300 ms".

The lake is written by the real telemetry worker's code (``bench.console_lake``: 20 vehicles over 3
days, ten fields per event); the console runs on CPU 0 with a receiver beside it (the Overview's
source) and the bench's broker. Each page is asked ``ROUNDS`` times one after the other after
``WARMUP`` requests; the median and the slowest are reported, as the client measured them (request
sent to last byte received).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx

from bench.infra import PY, log, run_json

if TYPE_CHECKING:
    from bench.run import Bench

WARMUP, ROUNDS = 3, 20


def _pages(vin: str) -> list[tuple[str, str]]:
    return [
        ("Overview", "/"),
        ("Events, all vehicles, last hour (Kafka + lake)", "/events"),
        ("Events, one VIN, last 24 h (Kafka + lake)", f"/events?vin={vin}&since=24h"),
        ("Vehicle list, last 24 h", "/vehicle"),
        ("Vehicle, one VIN, last 24 h (latest, 2 charts, route)", f"/vehicle?vin={vin}"),
        ("Vehicle, one VIN, last 3 days", f"/vehicle?vin={vin}&since=3d"),
        ("Alerts", "/alerts"),
        ("Credits", "/credits"),
        ("DLQ (list, counts, redrive log)", "/dlq"),
        ("Replay (the form, recent jobs)", "/replay"),
        ("Tokens", "/tokens"),
    ]


def phase_console(b: Bench) -> None:
    a = b.a
    lake = b.workdir / "console-lake"
    log(f"console: writing a lake of {a.console_rows:,} telemetry rows")
    filled = run_json([PY, "-m", "bench.console_lake", "--catalog-uri", f"sqlite:///{lake / 'catalog.db'}",
                       "--warehouse", str(lake / "warehouse"), "--rows", str(a.console_rows)], 1800)
    rcv = b.receiver("console")
    port = b.free_port()
    env = {**b.clean_env(), "TPIPE_CATALOG_URI": f"sqlite:///{lake / 'catalog.db'}",
           "TPIPE_WAREHOUSE": str(lake / "warehouse"), "TPIPE_KAFKA": b.broker.bootstrap,
           "TPIPE_TOKENS_FILE": str(b.workdir / "console-tokens.json"),
           "TPIPE_ALERTS_DB_URL": f"sqlite:///{b.workdir / 'console-alerts.db'}",
           "TPIPE_CREDITS_DB_URL": f"sqlite:///{b.workdir / 'console-credits.db'}"}
    cmd = [*b.pin0, PY, "-m", "tpipe.cli", "console", "--console-port", str(port), "--receiver-url", rcv.url]
    with open(b.workdir / "console.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base, proc)
        vin = filled["vins"][3]
        pages: list[dict[str, Any]] = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for name, path in _pages(vin):
                ms = []
                for i in range(WARMUP + ROUNDS):
                    t0 = time.perf_counter()
                    r = client.get(path)
                    took = (time.perf_counter() - t0) * 1000
                    if r.status_code != 200:
                        raise RuntimeError(f"console {path}: {r.status_code}")
                    if i >= WARMUP:
                        ms.append(took)
                pages.append({"page": name, "path": path, "median_ms": round(statistics.median(ms), 1),
                              "max_ms": round(max(ms), 1), "bytes": len(r.content)})
                log(f"console {name}: median {pages[-1]['median_ms']:.0f} ms, slowest {pages[-1]['max_ms']:.0f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        rcv.stop()
    b.res["phases"]["console"] = {"lake": filled, "pages": pages, "rounds": ROUNDS, "warmup": WARMUP}


def _wait(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tpipe console exited {proc.returncode}")
        try:
            if httpx.get(base + "/static/console.css", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # readiness poll
    raise RuntimeError("tpipe console not answering")
