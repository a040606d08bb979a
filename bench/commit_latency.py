"""Ack latency of the receiver under open-loop load, for receiver variants side by side (the adaptive
group commit of issue 16: ``--spool-gather-ms``).

    python -m bench.commit_latency                           # gather 0 (back to back) vs 1 ms, 3 rounds
    python -m bench.commit_latency --variant=--spool-gather-ms=0 --variant=--spool-gather-ms=2 --rate 4000
    python -m bench.commit_latency --no-broker               # the receiver alone (its forwarder waits for Kafka)

Each variant is a fresh ``tpipe serve`` (spool mode, forwarder process on CPU 1, receiver on CPU 0) with a
local broker, as in ``make bench``. Without ``--rate`` the first variant's maximum (``wrk -c64``) is measured
and half of it used, as ``make bench``'s latency phase does. Then, for ``--rounds`` rounds, every variant in
turn gets ``bench.openloop`` at that rate (warm-up, then the measured window; latency from each request's
intended send time). Reports p50 / p99 / p99.9, the generator's own lag (above 2 ms the figures are NOISY),
and the group commits per second and requests per commit of the window (from the receiver's metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bench.infra import PY, TOKEN, Server, free_port, log, make_bodies, run_openloop, run_wrk, wait_drained


def _commits(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    m = re.search(r"^tpipe_spool_commit_seconds_count\s+(\S+)", text, re.M)
    return float(m.group(1)) if m else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[],
                    help="`tpipe serve` flags of one variant, space separated (repeatable; "
                    "default: --spool-gather-ms=0 and --spool-gather-ms=1)")
    ap.add_argument("--rate", type=float, default=None, help="requests/s (default: half the first variant's max)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=8.0)
    ap.add_argument("--no-broker", action="store_true", help="no Kafka: the receiver alone, its forwarder waiting")
    a = ap.parse_args(argv)
    variants = a.variant or ["--spool-gather-ms=0", "--spool-gather-ms=1"]
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="tpipe-commitlat-"))
    bodies = make_bodies(work, 8)
    broker = None
    servers: list[Server] = []
    try:
        bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there with --no-broker
        if not a.no_broker:
            from localbroker import LocalBroker

            broker = LocalBroker(data_dir=work / "kafka")
            broker.start()
            bootstrap = broker.bootstrap
        for i, v in enumerate(variants):
            port = free_port()
            cmd = [PY, "-m", "tpipe.cli", "serve", "--port", str(port), "--kafka", bootstrap, "--token", TOKEN,
                   "--spool-dir", str(work / f"spool{i}"), "--topic-prefix", f"cl{os.getpid()}v{i}",
                   "--forwarder-cpus", "1", "--spool-max-bytes", str(8 << 30), *v.split()]
            servers.append(Server(f"variant{i}", cmd, port, work / f"serve{i}.log", ["taskset", "-c", "0"]).start())
        rate = a.rate
        if rate is None:
            run_wrk(servers[0].url, a.warmup, bodies)
            rate = run_wrk(servers[0].url, a.window, bodies)["req_per_s"] / 2
            if not a.no_broker:
                wait_drained(servers[0])
        log(f"open loop at {rate:.0f} requests/s")
        runs: list[dict[str, Any]] = []
        for rnd in range(a.rounds):
            for v, srv in zip(variants, servers, strict=True):
                c0 = _commits(srv.url)
                r = run_openloop(srv.url, rate, a.warmup, a.window, bodies)
                commits = _commits(srv.url) - c0
                secs = a.warmup + a.window
                r.update(variant=v, round=rnd, commits_per_s=round(commits / secs),
                         requests_per_commit=round(rate * secs / commits, 2) if commits else None)
                if not a.no_broker:
                    r["drain_after_s"] = wait_drained(srv)
                runs.append(r)
                log(f"round {rnd} {v}: p50 {r['p50_ms']} p99 {r['p99_ms']} p99.9 {r['p999_ms']} ms, "
                    f"{r['commits_per_s']} commits/s, generator lag p99 {r['gen_lag_p99_ms']} ms")
        summary = {v: {k: statistics.median(x[k] for x in runs if x["variant"] == v and x[k] is not None)
                       for k in ("p50_ms", "p99_ms", "p999_ms", "gen_lag_p99_ms", "commits_per_s")}
                   for v in variants}
        sys.stdout.write(json.dumps({"rate": rate, "runs": runs, "median": summary}) + "\n")
    finally:
        for srv in servers:
            srv.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
