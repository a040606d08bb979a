"""The receiver's phases: max throughput (wrk) against the Starlette no-op and, when it could be built,
the Go reference server, all alternated in the same rounds; open-loop latency at half the receiver's
maximum; a py-spy profile of the receiver at max rate."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.infra import (
    PY,
    RESULTS,
    TOKEN,
    Sampler,
    Server,
    get_json,
    log,
    med,
    ratio_stats,
    run_openloop,
    run_wrk,
    slope,
    wait_drained,
)
from ingest.settings import IngestSettings

if TYPE_CHECKING:
    from bench.run import Bench


def go_reference(b: Bench) -> Server | None:
    """The Go reference (202 after the Kafka ack) on CPU 0, producing to its own topic; None if skipped."""
    import asyncio

    from plumbing import kafka_clients

    if b.peers is None or b.peers.goserver is None:
        return None
    topic = f"bench{b.stamp[-6:]}.go"
    asyncio.run(kafka_clients.ensure_topics(IngestSettings(kafka=b.broker.bootstrap), [topic]))
    port = b.free_port()
    cmd = [str(b.peers.goserver), "-addr", f"127.0.0.1:{port}", "-brokers", b.broker.bootstrap, "-topic", topic,
           "-token", TOKEN, "-mode", "sync"]
    srv = Server("go", cmd, port, b.workdir / "go.log", b.pin0)
    b.servers.append(srv)
    return srv.start()


def phase_http(b: Bench, noop: Server, rcv: Server, go: Server | None) -> None:
    a = b.a
    runs: list[dict[str, Any]] = []
    endpoints = [("noop", noop), ("webhook", rcv), *([("go", go)] if go else [])]
    for rnd in range(a.rounds):
        for name, srv in endpoints:
            run_wrk(srv.url, a.warmup, b.bodies)  # warm-up
            samples: list[tuple[float, Any]] = []
            cpu0, load0 = srv.cpu_s(), os.getloadavg()[0]
            child0 = srv.children_cpu_s()
            if name == "webhook":
                def depth(url: str = srv.url) -> int:
                    return int(get_json(url + "/healthz")["spool"]["pending_events"])

                with Sampler(depth, 0.5) as smp:
                    r = run_wrk(srv.url, a.window, b.bodies)
                samples = smp.samples
                r["spool_depth"] = samples
                r["spool_depth_max"] = max((v for _, v in samples), default=None)
                r["spool_growth_events_per_s"] = slope([(t, float(v)) for t, v in samples])
                r["drain_after_s"] = wait_drained(srv)
            else:
                r = run_wrk(srv.url, a.window, b.bodies)
            # CPU per request is what the server itself spent: robust to other load on the machine
            r["server_cpu_us_per_req"] = (srv.cpu_s() - cpu0) * 1e6 / max(1, r["requests"])
            # the forwarder process (on its own CPU) until the backlog of this run was forwarded
            r["forwarder_cpu_us_per_req"] = (srv.children_cpu_s() - child0) * 1e6 / max(1, r["requests"])
            r["loadavg_1m"] = load0
            r.update(endpoint=name, round=rnd)
            runs.append(r)
            extra = (f", spool depth max {r['spool_depth_max']}, growth {r['spool_growth_events_per_s']:.0f}/s"
                     if name == "webhook" else "")
            log(f"http round {rnd} {name}: {r['req_per_s']:.0f} req/s p99 {r['p99_ms']:.1f} ms "
                f"errors {r['errors']}, server CPU {r['server_cpu_us_per_req']:.0f} us/req "
                f"(+ forwarder process {r['forwarder_cpu_us_per_req']:.0f}), load {load0:.1f}{extra}")

    def of(endpoint: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["endpoint"] == endpoint]

    noop_r, hook_r = of("noop", "req_per_s"), of("webhook", "req_per_s")
    growth = of("webhook", "spool_growth_events_per_s")
    noop_c, hook_c, fwd_c = of("noop", "server_cpu_us_per_req"), of("webhook", "server_cpu_us_per_req"), of(
        "webhook", "forwarder_cpu_us_per_req")
    b.max_rps = b.max_rps or med(hook_r)
    res: dict[str, Any] = {
        "runs": runs, "noop_median": med(noop_r), "webhook_median": med(hook_r),
        "ratio": ratio_stats(list(zip(hook_r, noop_r, strict=True))),
        "cpu_us_per_req": {"noop_median": med(noop_c), "webhook_median": med(hook_c),
                           "forwarder_process_median": med(fwd_c),
                           "efficiency_ratio": ratio_stats(list(zip(noop_c, hook_c, strict=True)))},
        "spool_growth_median_events_per_s": med(growth),
        # the forwarder takes the spool in chunks (forward_batch_events), so depth is a saw-tooth; the
        # backlog "grows" when its trend over a window exceeds two chunks
        "backlog_grows": med(growth) * a.window > 2 * IngestSettings().forward_batch_events,
    }
    if go:
        total = [h + f for h, f in zip(hook_c, fwd_c, strict=True)]
        go_c = of("go", "server_cpu_us_per_req")
        res["go"] = {"req_per_s_median": med(of("go", "req_per_s")), "cpu_us_per_req_median": med(go_c),
                     "tpipe_cpu_us_per_req_median": med(total),
                     "cpu_ratio": ratio_stats(list(zip(total, go_c, strict=True)))}
    b.res["phases"]["http"] = res


def phase_latency(b: Bench, noop: Server, rcv: Server) -> None:
    a = b.a
    if b.max_rps is None:
        log("latency: measuring the receiver's max rate first (one wrk run)")
        run_wrk(rcv.url, a.warmup, b.bodies)
        b.max_rps = run_wrk(rcv.url, a.window, b.bodies)["req_per_s"]
        wait_drained(rcv)
    rate = round(b.max_rps / 2)
    runs: list[dict[str, Any]] = []
    for rnd in range(a.rounds):
        for name, srv in (("noop", noop), ("webhook", rcv)):
            r = run_openloop(srv.url, rate, a.warmup, a.window, b.bodies)
            r.update(endpoint=name, round=rnd)
            if name == "webhook":
                r["drain_after_s"] = wait_drained(srv)
            runs.append(r)
            log(f"latency round {rnd} {name} @ {rate}/s: p50 {r['p50_ms']} p99 {r['p99_ms']} ms "
                f"max {r['max_ms']} ms, status {r['status']}, errors {r['errors']}, unanswered {r['unanswered']}, "
                f"generator lag p99 {r['gen_lag_p99_ms']} ms")
    noop_p = [r["p99_ms"] for r in runs if r["endpoint"] == "noop"]
    hook_p = [r["p99_ms"] for r in runs if r["endpoint"] == "webhook"]
    lags = [r["gen_lag_p99_ms"] for r in runs if r.get("gen_lag_p99_ms") is not None]
    b.res["phases"]["latency"] = {
        "rate": rate, "runs": runs, "generator_lag_p99_ms_max": max(lags, default=None),
        "noop_p99_median_ms": med(noop_p), "webhook_p99_median_ms": med(hook_p),
        "p99_ratio": ratio_stats(list(zip(hook_p, noop_p, strict=True))),
    }


def profile_receiver(b: Bench, rcv: Server) -> None:
    spy = str(Path(PY).parent / "py-spy")
    if not Path(spy).exists():  # a bench-only tool: installed into the venv on demand
        log("pip install py-spy (bench only)")
        subprocess.run([PY, "-m", "pip", "install", "-q", "py-spy"], check=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{b.stamp}-receiver.folded"
    assert rcv.proc is not None
    prof = subprocess.Popen([spy, "record", "-o", str(out), "-f", "raw", "-d", str(int(b.a.window)),
                             "-r", "250", "-p", str(rcv.proc.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # py-spy attaches before the load starts (its own start-up, not a readiness check)
    r = run_wrk(rcv.url, b.a.window, b.bodies)
    prof.wait(60)
    wait_drained(rcv)
    log(f"profile: {out} (collapsed stacks, during a {r['req_per_s']:.0f} req/s run); top frames:")
    for line in top_frames(out):
        print("   ", line)
    b.res["profile"] = {"folded": str(out), "top": top_frames(out)}


def top_frames(folded: Path, n: int = 25) -> list[str]:
    """Self and inclusive share of the hottest frames in a py-spy collapsed-stack file."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not cnt.isdigit():
            continue
        c = int(cnt)
        total += c
        frames = [re.sub(r" \(.*?/(site-packages|main)/", " (", f) for f in stack.split(";")]
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    if not total:
        return []
    top = sorted(incl.items(), key=lambda kv: -kv[1])[:n]
    return [f"{100 * v / total:5.1f}% incl {100 * self_c.get(k, 0) / total:5.1f}% self  {k}" for k, v in top]
