"""``make bench``: the receiver, forwarder and lake worker against same-run baselines and peers, as ratios.

    python -m bench.run [--window 8] [--warmup 2] [--rounds 3] [--outage 120] [--only http,latency,...]

Phases (each bounded; see docs/performance.md for the method):

* ``http``     max throughput: ``wrk -t1 -c64`` (Lua rotation over 0.5/1.5/3 KB events) against ``POST /webhook``
               (spool mode, real local broker), a bare Starlette no-op endpoint and the Go reference server
               (net/http + franz-go, 202 after the Kafka ack; ``bench.peers``), alternated in every round.
* ``latency``  open-loop fixed rate (``bench.openloop``) at half the receiver's maximum, both endpoints, p99.
* ``forwarder`` spool -> Kafka (``bench.forward``) vs a raw aiokafka ``send()`` loop, same producer config.
* ``lake``     ``tpipe consume telemetry`` vs a raw ``getmany`` loop (``bench.lake``) and the Apache Iceberg
               Kafka Connect sink, alternated in every round (``bench.lake_phase``).
* ``outage``   receiver RSS while the broker is SIGKILLed, at half the maximum rate (``--outage`` seconds).
* ``console``  every page of ``tpipe console`` with a lake of 1 million telemetry rows (``bench.console_phase``).

Servers and writers run on CPU 0 (``taskset -c 0``); this process, the load generators and the broker on
CPU 1. Writes ``bench/results/<timestamp>.json`` and ``.png`` and prints every figure against its target,
the receiver's own targets first, then issue 16's table (the peers). A peer that cannot be prepared on this
machine (no ``go``, no shared peers material) is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import console_phase, http_phases, lake_phase, peers, pipeline_phases
from bench.infra import (
    NICE,
    PY,
    RESULTS,
    ROOT,
    TOKEN,
    Server,
    ensure_tool,
    env_info,
    free_port,
    log,
    make_bodies,
)
from bench.report import PEER_TARGETS, TARGETS, chart, summarize, summarize_peers


class Bench:
    """One run: its work dir, the broker, the servers started, the peers prepared, the results."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.stamp = time.strftime("%Y%m%dT%H%M%S")
        self.workdir = Path(tempfile.mkdtemp(prefix="tpipe-bench-"))
        self.pin0 = ["taskset", "-c", "0"] if (os.cpu_count() or 1) >= 2 and not a.no_pin else []
        self.res: dict[str, Any] = {"timestamp": self.stamp, "args": vars(a), "env": env_info(),
                                    "targets": TARGETS, "peer_targets": PEER_TARGETS, "phases": {}}
        self.bodies = make_bodies(self.workdir, a.vins)
        self.res["corpus"] = {"bodies": len(self.bodies), "sizes": sorted({p.stat().st_size for p in self.bodies})}
        self.broker: Any = None
        self.servers: list[Server] = []
        self.max_rps: float | None = a.rate
        self.peers: peers.Peers | None = None

    @staticmethod
    def free_port() -> int:
        return free_port()

    @staticmethod
    def clean_env() -> dict[str, str]:
        """The environment without ``TPIPE_*`` settings: every process gets its flags explicitly."""
        return {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}

    def start_broker(self) -> None:
        from localbroker import LocalBroker

        log("starting the local Kafka broker (CPU 1)")
        self.broker = LocalBroker(port=0, data_dir=self.workdir / "kafka", die_with_parent=True).start()
        self.res["broker"] = {"bootstrap": self.broker.bootstrap, "startup_s": self.broker.startup_seconds}

    def receiver(self, tag: str, *extra: str) -> Server:
        port = free_port()
        prefix = f"bench{self.stamp[-6:]}{tag}{uuid.uuid4().hex[:4]}"
        cmd = [PY, "-m", "tpipe.cli", "serve", "--port", str(port), "--kafka", self.broker.bootstrap,
               "--token", TOKEN, "--spool-dir", str(self.workdir / f"spool-{tag}"), "--topic-prefix", prefix,
               *(["--forwarder-cpus", self.a.forwarder_cpus] if self.a.forwarder_cpus else []),
               *self.a.receiver_arg, *extra]
        srv = Server(f"receiver-{tag}", cmd, port, self.workdir / f"receiver-{tag}.log", self.pin0)
        self.servers.append(srv)
        return srv.start()

    def noop(self) -> Server:
        port = free_port()
        srv = Server("noop", [PY, "-m", "bench.noop_server", "--port", str(port)], port,
                     self.workdir / "noop.log", self.pin0)
        self.servers.append(srv)
        return srv.start()

    def close(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.stop()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                self.broker.cleanup()
        if not self.a.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self) -> None:
        phases = {p.strip() for p in self.a.only.split(",") if p.strip()}
        want_go = "http" in phases and not self.a.no_peers
        want_iceberg = "lake" in phases and not self.a.no_peers
        if want_go or want_iceberg:
            self.peers = peers.prepare(want_go, want_iceberg)
            self.res["peers_skipped"] = self.peers.skipped
        self.start_broker()
        if {"http", "latency", "profile"} & phases:
            noop, rcv = self.noop(), self.receiver("main")
            go = http_phases.go_reference(self) if "http" in phases else None
            if "profile" in phases:
                http_phases.profile_receiver(self, rcv)
            if "http" in phases:
                http_phases.phase_http(self, noop, rcv, go)
            if "latency" in phases:
                http_phases.phase_latency(self, noop, rcv)
            for srv in (noop, rcv, go):
                if srv is not None:
                    srv.stop()
        if "forwarder" in phases:
            pipeline_phases.phase_forwarder(self)
        if "lake" in phases:
            lake_phase.phase_lake(self)
        if "outage" in phases and self.a.outage > 0:
            pipeline_phases.phase_outage(self)
        if "console" in phases:
            console_phase.phase_console(self)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each run")
    ap.add_argument("--rounds", type=int, default=3, help="baseline/candidate alternations")
    ap.add_argument("--outage", type=float, default=120.0, help="broker outage seconds (0: skip the phase)")
    ap.add_argument("--only", default="http,latency,forwarder,lake,outage,console",
                    help="comma-separated phases: http,latency,forwarder,lake,outage,console,profile")
    ap.add_argument("--rate", type=float, default=None, help="max rate to halve (default: measured in http)")
    ap.add_argument("--forward-events", type=int, default=60000)
    ap.add_argument("--forwarder-cpus", default="1",
                    help="the receivers' forwarder process CPUs (--forwarder-cpus of tpipe serve; '' = same as the server)")
    ap.add_argument("--lake-events", type=int, default=240000,
                    help="distinct events on the lake's topic (issue 16's figures: 240,000)")
    ap.add_argument("--lake-timeout", type=float, default=900.0, help="seconds a lake writer may take per round")
    ap.add_argument("--iceberg-commit-ms", type=int, default=5000,
                    help="the Iceberg sink's commit interval (the lake worker's --commit-interval-s default: 5 s)")
    ap.add_argument("--console-rows", type=int, default=1_000_000,
                    help="telemetry rows in the lake the console's pages are timed against (issue 17: 1 million)")
    ap.add_argument("--no-peers", action="store_true", help="skip the Go reference and the Iceberg sink")
    ap.add_argument("--vins", type=int, default=8, help="VINs per fixture in the HTTP corpus")
    ap.add_argument("--receiver-arg", action="append", default=[],
                    help="extra `tpipe serve` argument (repeatable, e.g. --receiver-arg=--spool-commit-delay-ms=1)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    ap.add_argument("--nice", type=int, default=0,
                    help="run servers and load generators at this nice value (e.g. -5, as root) on a shared machine")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, spools, lakes)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    os.chdir(ROOT)
    if (os.cpu_count() or 1) >= 2 and not a.no_pin:
        os.sched_setaffinity(0, {1})  # this process, the load generators and the broker: CPU 1
    if {"http", "latency", "profile", "outage"} & set(a.only.split(",")):
        ensure_tool("wrk", "wrk")
    if a.nice:
        NICE[:] = ["nice", "-n", str(a.nice)]
    bench = Bench(a)
    log(f"work dir {bench.workdir}; corpus {len(bench.bodies)} bodies {bench.res['corpus']['sizes']} bytes")
    t0 = time.monotonic()
    try:
        bench.run()
    finally:
        bench.close()
    res = bench.res
    res["elapsed_s"] = round(time.monotonic() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    jpath = RESULTS / f"{bench.stamp}.json"
    rows, peer_rows = summarize(res), summarize_peers(res)
    keys = ("figure", "value", "target", "verdict")
    res["summary"] = [dict(zip(keys, r, strict=True)) for r in rows]
    res["summary_issue16"] = [dict(zip(keys, r, strict=True)) for r in peer_rows]
    jpath.write_text(json.dumps(res, indent=1, default=str))
    ppath = RESULTS / f"{bench.stamp}.png"
    chart(res, ppath)
    w = max((len(r[0]) for r in [*rows, *peer_rows]), default=10)
    for title, table in (("targets", rows), ("issue 16: against the peers", peer_rows)):
        if table:
            print(f"\n{title}")
            for fig_, val, tgt, verdict in table:
                print(f"{verdict:5} {fig_:<{w}}  {val}   (target {tgt})")
    for name, why in res.get("peers_skipped", {}).items():
        print(f"SKIP  peer {name}: {why}")
    print(f"\nresults: {jpath}\nchart:   {ppath}\nelapsed: {res['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
