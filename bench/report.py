"""The bench's verdicts and chart: every figure against its target (PASS / MISS / INFO / NOISY / SKIP).

Two sets of targets: the receiver's own figures as they were (``TARGETS``: ratios to the Starlette
no-op and the raw loops), and the target table of issue 16 (``PEER_TARGETS``: the lake against the
raw ``getmany`` and the Iceberg Kafka Connect sink, the receiver against the Go reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS = {
    "ingest_ratio_min": 0.75,
    "p99_ms_max": 10.0,
    "p99_ratio_max": 3.0,
    "forwarder_ratio_min": 0.8,
    "lake_ratio_min": 0.3,
    "console_page_ms_max": 300.0,  # issue 17: each console page with a 1M-row lake
}
#: issue 16's table: ratios in one ``make bench`` run
PEER_TARGETS = {
    "lake_events_ratio_min": 0.3,  # lake worker events/s / raw getmany
    "lake_cpu_vs_iceberg_max": 0.5,  # lake worker CPU per event / the Iceberg Kafka Connect sink's
    "receiver_cpu_vs_go_max": 1.5,  # receiver + forwarder CPU per request / the Go reference's
    "p99_ms_max": 5.0,  # p99 ack latency at half the max rate (open loop)
    "forwarder_ratio_min": 0.8,  # forwarder events/s / raw send() loop
}

Row = tuple[str, str, str, str]


def _ok(b: bool) -> str:
    return "PASS" if b else "MISS"


def _ratio(r: dict[str, float], digits: int = 3) -> str:
    return f"{r['median']:.{digits}f} (min {r['min']:.{digits}f}, max {r['max']:.{digits}f})"


def summarize(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows: (figure, value, target, verdict)."""
    ph, t = res["phases"], res["targets"]
    rows: list[tuple[str, str, str, str]] = []

    ok = _ok

    if "http" in ph:
        h = ph["http"]
        r = h["ratio"]
        rows.append(("ingest req/s: webhook / no-op", f"{h['webhook_median']:.0f} / {h['noop_median']:.0f} = "
                     f"{r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})",
                     f">= {t['ingest_ratio_min']}", ok(r["median"] >= t["ingest_ratio_min"])))
        c = h["cpu_us_per_req"]
        rows.append(("  (info) server CPU per request: no-op / webhook",
                     f"{c['noop_median']:.0f} / {c['webhook_median']:.0f} us = {c['efficiency_ratio']['median']:.3f}",
                     "-", "INFO"))
        if c.get("forwarder_process_median"):
            rows.append(("  (info) + forwarder process CPU per request (other core)",
                         f"{c['forwarder_process_median']:.0f} us", "-", "INFO"))
        rows.append(("spool backlog at max rate", f"growth {h['spool_growth_median_events_per_s']:.0f} events/s "
                     f"(max depth {max(x['spool_depth_max'] or 0 for x in h['runs'] if x['endpoint'] == 'webhook')})",
                     "does not grow", ok(not h["backlog_grows"])))
    if "latency" in ph:
        lt = ph["latency"]
        rows.append((f"p99 ack latency @ {lt['rate']}/s (webhook)", f"{lt['webhook_p99_median_ms']:.2f} ms",
                     f"<= {t['p99_ms_max']} ms", ok(lt["webhook_p99_median_ms"] <= t["p99_ms_max"])))
        lag = lt.get("generator_lag_p99_ms_max")
        if lag is None or lag > 2.0:
            rows.append(("  (warning) open-loop generator lag p99", f"{lag} ms: the generator's CPU was contended, "
                         "latency figures include its own delay", "< 2 ms", "NOISY"))
        r = lt["p99_ratio"]
        rows.append(("p99 webhook / p99 no-op", f"{lt['webhook_p99_median_ms']:.2f} / {lt['noop_p99_median_ms']:.2f} = "
                     f"{r['median']:.2f} (min {r['min']:.2f}, max {r['max']:.2f})",
                     f"<= {t['p99_ratio_max']}", ok(r["median"] <= t["p99_ratio_max"])))
    if "forwarder" in ph:
        f = ph["forwarder"]
        r = f["ratio"]
        rows.append(("forwarder events/s: spool->Kafka / raw send loop", f"{f['forwarder_median']:.0f} / "
                     f"{f['raw_median']:.0f} = {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})",
                     f">= {t['forwarder_ratio_min']}", ok(r["median"] >= t["forwarder_ratio_min"])))
    if "lake" in ph:
        lk = ph["lake"]
        r = lk["ratio"]
        rows.append(("lake worker events/s / raw getmany", f"{lk['worker_median']:.0f} / {lk['raw_median']:.0f} = "
                     f"{r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})",
                     f">= {t['lake_ratio_min']}", ok(r["median"] >= t["lake_ratio_min"])))
    if "outage" in ph and ph["outage"]["rss_growth_mb"] is not None:
        o = ph["outage"]
        rows.append((f"receiver RSS, {o['outage_s']:.0f} s broker outage @ {o['rate']}/s",
                     f"{o['rss_mb_at_kill']:.1f} -> {o['rss_mb_end']:.1f} MB (growth {o['rss_growth_mb']:.1f} MB, "
                     f"{o['rss_slope_mb_per_min']:.2f} MB/min); spool max {o['pending_max']}",
                     "flat", ok(o["flat"])))
    for pg in ph.get("console", {}).get("pages", ()):
        limit = t.get("console_page_ms_max", 300.0)
        rows.append((f"console: {pg['page']}", f"median {pg['median_ms']:.0f} ms, slowest {pg['max_ms']:.0f} ms "
                     f"({ph['console']['lake']['rows']:,}-row lake)", f"< {limit:.0f} ms", ok(pg["median_ms"] < limit)))
    return rows


def summarize_peers(res: dict[str, Any]) -> list[Row]:
    """Issue 16's target table, each row from this run (SKIP: the phase or peer did not run)."""
    ph, t = res["phases"], PEER_TARGETS
    skipped = res.get("peers_skipped", {})
    rows: list[Row] = []
    lk = ph.get("lake")
    if lk:
        rows.append(("lake worker events/s / raw getmany", f"{lk['worker_median']:.0f} / {lk['raw_median']:.0f} = "
                     f"{_ratio(lk['ratio'])}", f">= {t['lake_events_ratio_min']}",
                     _ok(lk["ratio"]["median"] >= t["lake_events_ratio_min"])))
        ice = lk.get("iceberg")
        if ice:
            rows.append(("lake worker CPU/event / Iceberg Kafka Connect sink's (after first commit)",
                         f"{lk['worker_cpu_us_per_event_median']:.1f} / {ice['cpu_us_per_event_median']:.1f} us = "
                         f"{_ratio(ice['cpu_ratio'], 2)}", f"<= {t['lake_cpu_vs_iceberg_max']}",
                         _ok(ice["cpu_ratio"]["median"] <= t["lake_cpu_vs_iceberg_max"])))
            rows.append(("  (info) committed events/s: lake worker / Iceberg sink",
                         f"{lk['worker_committed_median']:.0f} / {ice['committed_median']:.0f} = "
                         f"{_ratio(ice['committed_ratio'], 2)}", "-", "INFO"))
        else:
            rows.append(("lake worker CPU/event / Iceberg Kafka Connect sink's", "not measured: "
                         + str(skipped.get("iceberg", "the sink did not run")), "<= 0.5", "SKIP"))
    h = ph.get("http")
    if h:
        go = h.get("go")
        if go:
            rows.append(("receiver + forwarder CPU/request / Go reference's",
                         f"{go['tpipe_cpu_us_per_req_median']:.0f} / {go['cpu_us_per_req_median']:.0f} us = "
                         f"{_ratio(go['cpu_ratio'], 2)}", f"<= {t['receiver_cpu_vs_go_max']}",
                         _ok(go["cpu_ratio"]["median"] <= t["receiver_cpu_vs_go_max"])))
            rows.append(("  (info) Go reference req/s (202 after the Kafka ack)", f"{go['req_per_s_median']:.0f}",
                         "-", "INFO"))
        else:
            rows.append(("receiver + forwarder CPU/request / Go reference's",
                         "not measured: " + str(skipped.get("go", "the Go reference did not run")), "<= 1.5", "SKIP"))
    lt = ph.get("latency")
    if lt:
        rows.append((f"p99 ack latency @ {lt['rate']}/s (half max, open loop)", f"{lt['webhook_p99_median_ms']:.2f} ms",
                     f"<= {t['p99_ms_max']} ms", _ok(lt["webhook_p99_median_ms"] <= t["p99_ms_max"])))
    f = ph.get("forwarder")
    if f:
        rows.append(("forwarder events/s / raw send() loop", _ratio(f["ratio"]), f">= {t['forwarder_ratio_min']}",
                     _ok(f["ratio"]["median"] >= t["forwarder_ratio_min"])))
    o = ph.get("outage")
    if o and o["rss_growth_mb"] is not None:
        rows.append((f"receiver RSS during a {o['outage_s']:.0f} s outage", f"growth {o['rss_growth_mb']:.1f} MB",
                     "flat", _ok(o["flat"])))
    return rows


def chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ph = res["phases"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    fig.suptitle(f"tpipe bench {res['timestamp']} - {res['env'].get('cpu', '?')} x{res['env'].get('nproc')}")

    def bars(ax: Any, runs: list[dict[str, Any]], key: str, field: str, names: tuple[str, str], title: str,
             unit: str) -> None:
        for i, name in enumerate(names):
            vals = [r[field] for r in runs if r.get(key) == name]
            xs = [j * 3 + i for j in range(len(vals))]
            ax.bar(xs, vals, label=name)
        ax.set_title(title)
        n = max((sum(1 for r in runs if r.get(key) == nm) for nm in names), default=0)
        ax.set_xticks([j * 3 + 0.5 for j in range(n)], [str(j) for j in range(n)])
        ax.set_xlabel("round (alternated)")
        ax.set_ylabel(unit)
        ax.legend()

    if "http" in ph:
        bars(axes[0][0], ph["http"]["runs"], "endpoint", "req_per_s", ("noop", "webhook"),
             f"max throughput (wrk -c64), ratio {ph['http']['ratio']['median']:.2f}", "req/s")
        ax = axes[1][0]
        for r in ph["http"]["runs"]:
            if r["endpoint"] == "webhook":
                ax.plot([t for t, _ in r["spool_depth"]], [v for _, v in r["spool_depth"]], label=f"round {r['round']}")
        ax.set_title("spool depth during max-rate runs")
        ax.set_xlabel("s")
        ax.set_ylabel("events")
        ax.legend()
    if "latency" in ph:
        bars(axes[0][1], ph["latency"]["runs"], "endpoint", "p99_ms", ("noop", "webhook"),
             f"p99 @ {ph['latency']['rate']}/s open loop, ratio {ph['latency']['p99_ratio']['median']:.2f}", "ms")
    if "forwarder" in ph:
        bars(axes[0][2], ph["forwarder"]["runs"], "mode", "events_per_s", ("raw", "forwarder"),
             f"spool->Kafka, ratio {ph['forwarder']['ratio']['median']:.2f}", "events/s")
    if "lake" in ph and "runs" in ph["lake"]:
        bars(axes[1][1], ph["lake"]["runs"], "mode", "events_per_s", ("raw", "tpipe"),
             f"lake worker vs getmany, ratio {ph['lake']['ratio']['median']:.2f}", "events/s")
    if "outage" in ph:
        o = ph["outage"]
        ax = axes[1][2]
        ts = [t for t, _ in o["samples"]]
        ax.plot(ts, [v["rss_kb"] / 1024 if v["rss_kb"] else None for _, v in o["samples"]], color="C0")
        ax.set_ylabel("receiver RSS MB", color="C0")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.plot(ts, [v["pending"] for _, v in o["samples"]], color="C1")
        ax2.set_ylabel("spool events", color="C1")
        ax.axvspan(o["t_kill"], o["t_restart"], color="grey", alpha=0.2)
        ax.set_title(f"broker outage @ {o['rate']}/s (shaded)")
        ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


