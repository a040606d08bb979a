"""The forwarder (spool -> Kafka against a raw ``send()`` loop) and the broker outage (receiver RSS while
the broker is SIGKILLed, at half the receiver's maximum rate)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from bench.infra import (
    PY,
    Sampler,
    get_json,
    log,
    med,
    ratio_stats,
    run_json,
    run_openloop,
    run_wrk,
    slope,
    wait_drained,
)

if TYPE_CHECKING:
    from bench.run import Bench


def phase_forwarder(b: Bench) -> None:
    a = b.a
    runs: list[dict[str, Any]] = []
    prefix = f"benchfw{b.stamp[-6:]}"
    for rnd in range(a.rounds):
        for mode in ("raw", "forwarder"):
            cmd = [*b.pin0, PY, "-m", "bench.forward", "--kafka", b.broker.bootstrap, "--prefix", prefix,
                   "--events", str(a.forward_events), "--mode", mode, *map(str, b.bodies[:3])]
            r = run_json(cmd, 600)
            r["round"] = rnd
            runs.append(r)
            log(f"forwarder round {rnd} {mode}: {r['events_per_s']:.0f} events/s ({r['seconds']:.2f} s)")
    raw = [r["events_per_s"] for r in runs if r["mode"] == "raw"]
    fw = [r["events_per_s"] for r in runs if r["mode"] == "forwarder"]
    b.res["phases"]["forwarder"] = {"runs": runs, "raw_median": med(raw), "forwarder_median": med(fw),
                                    "ratio": ratio_stats(list(zip(fw, raw, strict=True)))}


def phase_outage(b: Bench) -> None:
    a = b.a
    # room for the whole outage's backlog (~1.7 KB per body), so the phase measures memory, not spool-full 503s
    backlog_bytes = int((b.max_rps or 20000) / 2 * (a.outage + 30) * 1700 * 1.5)
    rcv = b.receiver("outage", "--spool-max-bytes", str(max(1 << 30, backlog_bytes)))
    if b.max_rps is None:
        run_wrk(rcv.url, a.warmup, b.bodies)
        b.max_rps = run_wrk(rcv.url, a.window, b.bodies)["req_per_s"]
        wait_drained(rcv)
    rate = round(b.max_rps / 2)
    pre, post = 5.0, 5.0
    total = pre + a.outage + post
    log(f"outage: {rate} req/s for {total:.0f} s; broker killed at {pre:.0f} s for {a.outage:.0f} s")

    def sample() -> dict[str, Any]:
        h = get_json(rcv.url + "/healthz")
        return {"rss_kb": rcv.rss_kb(), "pending": h["spool"]["pending_events"], "broker_up": h["broker"]["up"]}

    box: dict[str, Any] = {}
    load = threading.Thread(target=lambda: box.update(r=run_openloop(rcv.url, rate, 0, total, b.bodies)))
    with Sampler(sample, 1.0) as smp:
        load.start()
        time.sleep(pre)
        b.broker.kill()
        t_kill = time.monotonic() - smp.t0
        time.sleep(a.outage)
        t_back = time.monotonic() - smp.t0
        b.broker.restart()
        load.join()
        drain = wait_drained(rcv, timeout=max(120.0, a.outage * 2))
    series = smp.samples
    during = [(t, v["rss_kb"] / 1024) for t, v in series if t_kill + 10 <= t <= t_back and v["rss_kb"]]
    rss_start = next((v["rss_kb"] / 1024 for t, v in series if t >= t_kill and v["rss_kb"]), None)
    rss_end = during[-1][1] if during else None
    growth = (rss_end - during[0][1]) if during else None
    load_r = box.get("r", {})
    b.res["phases"]["outage"] = {
        "rate": rate, "outage_s": a.outage, "t_kill": t_kill, "t_restart": t_back, "samples": series,
        "rss_mb_at_kill": rss_start, "rss_mb_end": rss_end, "rss_growth_mb": growth,
        "rss_slope_mb_per_min": slope(during) * 60, "pending_max": max((v["pending"] for _, v in series), default=0),
        "drain_after_restart_s": drain, "load": load_r,
        "flat": growth is not None and growth <= max(16.0, 0.1 * (rss_start or 0)),
    }
    if growth is None:  # an outage shorter than the 10 s settling time: nothing to compare
        log(f"outage: too short to sample RSS during it ({a.outage:.0f} s); drained {drain:.1f} s after restart")
    else:
        log(f"outage: RSS {rss_start:.1f} -> {rss_end:.1f} MB (growth {growth:.1f} MB, "
            f"{slope(during) * 60:.2f} MB/min), spool max {b.res['phases']['outage']['pending_max']} events, "
            f"drained {drain:.1f} s after restart; load status {load_r.get('status')}")
    rcv.stop()

