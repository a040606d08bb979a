"""Where the receiver's and the forwarder's CPU per request goes, measured so that it holds on a busy machine.

    python -m bench.receiver_profile                      # instructions per request (callgrind), 2 runs
    python -m bench.receiver_profile --mode cpu --repeat 3 # CPU µs per request from /proc, no valgrind
    python -m bench.receiver_profile --receiver-arg=--spool-commit-delay-ms=1   # any `tpipe serve` flag

Each run starts a fresh ``tpipe serve`` (spool mode, forwarder process, real local broker) on CPU 0 with
its forwarder on CPU 1, sends 200 warm-up requests and waits until they are forwarded, then zeroes the
counters, sends exactly N requests (the bench corpus: 0.5/1.5/3 KB ``data`` events × 8 VINs, in rotation,
over ``--concurrency`` keep-alive connections from this process on CPU 1), waits until the spool is
forwarded, and reads the counters of both processes:

* ``--mode callgrind`` (default): both processes run under ``valgrind --tool=callgrind``
  (``--trace-children=yes``); ``callgrind_control -z`` zeroes and ``-d`` dumps each. Instructions are
  user-space instructions: deterministic for a given workload (a second run agrees within ≈1 %),
  blind to the kernel (syscalls: socket reads and writes, fdatasync) and to the machine's other load.
  ``--requests 2000,4000`` runs both sizes and reports the per-request slope, which cancels what the
  window costs whatever its size (the drain polling, periodic tasks).
* ``--mode cpu``: user + system CPU of both processes from ``/proc`` over the same window (kernel time
  included; moved by other load through caches and frequency; median of ``--repeat`` runs).
  ``--wrk-seconds S`` loads with wrk at its maximum rate instead, as ``make bench`` does.
* ``--mode forwarder``: the forwarder alone under callgrind (``bench.forward`` draining a prefilled spool of
  ``--events`` bodies in chunks of ``--forward-batch-events``; only the drain is counted): its instructions
  per event do not depend on how the live receiver's commits happened to cut the chunks.
* ``--mode syscalls``: system calls per request of each process (``strace -c`` attached for the
  window): the kernel's share, which instruction counts do not see, as a count.

``tpipe_spool_commit_seconds_count`` gives the group commits of the window (requests per commit decide
how much of a commit each request pays; under valgrind the receiver is ~50× slower, so commits group
more requests than at the same concurrency natively). Prints one JSON line per run and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.infra import CLK, FIXTURES, ROOT, TOKEN, child_pids, free_port, get_json, log, make_bodies, run_wrk

WARMUP_REQUESTS = 200


# ------------------------------------------------------------------------------------- the client


def requests_for(bodies: list[Path], port: int) -> list[bytes]:
    out = []
    for p in bodies:
        body = p.read_bytes()
        head = (f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        out.append(head.encode() + body)
    return out


async def _connection(host: str, port: int, reqs: list[bytes], todo: list[int], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while todo:
            i = todo.pop()
            writer.write(reqs[i % len(reqs)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def send(port: int, reqs: list[bytes], n: int, concurrency: int) -> dict[int, int]:
    """Send exactly ``n`` requests over ``concurrency`` keep-alive connections; the status counts."""
    todo = list(range(n - 1, -1, -1))
    statuses: dict[int, int] = {}

    async def main() -> None:
        await asyncio.gather(*(_connection("127.0.0.1", port, reqs, todo, statuses) for _ in range(concurrency)))

    asyncio.run(main())
    return statuses


# ------------------------------------------------------------------------------------- one run


def _counts(url: str) -> tuple[float, float]:
    """(group commits, chunks forwarded) so far, from the receiver's metrics."""
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=60).read().decode()
    out = []
    for name in ("tpipe_spool_commit_seconds_count", "tpipe_forward_latency_seconds_count"):
        m = re.search(rf"^{name}\s+(\S+)", text, re.M)
        out.append(float(m.group(1)) if m else float("nan"))
    return out[0], out[1]


def _wait(url: str, timeout: float) -> None:
    """Until the receiver answers and its spool is fully forwarded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            h = get_json(url + "/healthz", 30.0)
            if h["spool"]["pending_events"] == 0 and h["forwarder"]["pid"]:
                return
        time.sleep(0.5)
    raise RuntimeError(f"receiver at {url} not drained after {timeout:.0f} s")


def _cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(f[11]) + int(f[12])) / CLK


def _callgrind(cmd: str, pid: int) -> None:
    subprocess.run(["callgrind_control", cmd, str(pid)], check=True, capture_output=True, timeout=600)


def _dumped_instructions(out_dir: Path, pid: int) -> int:
    """Instructions of the last dump of ``pid`` (``callgrind_control -d`` writes ``cg.<pid>.<n>``)."""
    dumps = sorted(out_dir.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    if not dumps:
        raise RuntimeError(f"no callgrind dump of pid {pid} in {out_dir}")
    m = re.search(r"^totals:\s+(\d+)", dumps[-1].read_text(errors="replace"), re.M)
    if not m:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(m.group(1))


def _strace_counts(path: Path) -> dict[str, int]:
    """``strace -c`` summary: calls per syscall (the ``errors`` column is left out)."""
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3])
    return calls


def run_once(a: argparse.Namespace, bootstrap: str, n: int, bodies: list[Path], work: Path) -> dict[str, Any]:
    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    cmd = [sys.executable, "-m", "tpipe.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--token", TOKEN, "--spool-dir", str(run_dir / "spool"), "--kafka", bootstrap,
           "--topic-prefix", f"rp{os.getpid()}x{n}", "--forwarder-cpus", "1", *a.receiver_arg]
    cg = a.mode == "callgrind"
    if cg:
        cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--dump-instr=no",
               f"--callgrind-out-file={run_dir}/cg.%p", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
    env["PYTHONHASHSEED"] = "0"
    fh = open(run_dir / "serve.log", "ab")
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, 900 if cg else 90)
        reqs = requests_for(bodies, port)
        send(port, reqs, WARMUP_REQUESTS, a.concurrency)
        _wait(url, 900 if cg else 90)
        child = child_pids(proc.pid)
        if len(child) != 1:
            raise RuntimeError(f"expected one forwarder process under {proc.pid}, found {child}")
        pids = {"receiver": proc.pid, "forwarder": child[0]}
        idle: dict[str, float] = {}
        if cg and a.idle_s > 0:  # what the window costs with no requests at all (timers, status reports)
            for pid in pids.values():
                _callgrind("-z", pid)
            time.sleep(a.idle_s)
            for k, pid in pids.items():
                _callgrind("-d", pid)
                idle[k] = _dumped_instructions(run_dir, pid) / a.idle_s
        commits0, chunks0 = _counts(url)
        if cg:
            for pid in pids.values():
                _callgrind("-z", pid)
        tracers = {}
        if a.mode == "syscalls":  # strace -c attached to each process for the window (counts, not times)
            for k, pid in pids.items():
                tracers[k] = subprocess.Popen(["strace", "-f", "-c", "-q", "-o", str(run_dir / f"strace.{k}"),
                                               "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # strace needs a moment to attach to every thread (no readiness signal to poll)
        cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        if a.wrk_seconds:  # wrk at its maximum rate, as make bench: n is what it sent
            r = run_wrk(url, a.wrk_seconds, bodies, a.concurrency)
            n, statuses = r["requests"], {202: r["requests"] - r["non_2xx"], "other": r["non_2xx"] + r["errors"]}
        else:
            statuses = send(port, reqs, n, a.concurrency)
        sent_s = time.monotonic() - t0
        if cg:  # every request answered: the receiver's share is done (the forwarder's reports aside)
            _callgrind("-d", pids["receiver"])
        _wait(url, 1800 if cg else 120)
        window = {"receiver": sent_s, "forwarder": time.monotonic() - t0}
        for proc_ in tracers.values():
            proc_.send_signal(2)
            proc_.wait(60)
        cpu = {k: _cpu_s(p) - cpu0[k] for k, p in pids.items()}
        if cg:
            _callgrind("-d", pids["forwarder"])
        commits, chunks = (x - x0 for x, x0 in zip(_counts(url), (commits0, chunks0), strict=True))
        out: dict[str, Any] = {"requests": n, "statuses": statuses, "concurrency": a.concurrency,
                               "group_commits": commits, "requests_per_commit": round(n / commits, 2) if commits else None,
                               "chunks": chunks, "requests_per_chunk": round(n / chunks, 2) if chunks else None,
                               "send_s": round(sent_s, 3), "req_per_s": round(n / sent_s),
                               "forwarded_s": round(window["forwarder"], 3)}
        if cg:
            for k, pid in pids.items():
                total = _dumped_instructions(run_dir, pid)
                out[f"{k}_instructions"] = total
                out[f"{k}_instructions_per_req"] = round(total / n)
                if idle:
                    out[f"{k}_idle_instructions_per_s"] = round(idle[k])
                    out[f"{k}_net_instructions_per_req"] = round((total - idle[k] * window[k]) / n)
        elif tracers:
            for k in pids:
                calls = _strace_counts(run_dir / f"strace.{k}")
                out[f"{k}_syscalls_per_req"] = round(sum(calls.values()) / n, 2)
                out[f"{k}_syscalls"] = {name: round(c / n, 3) for name, c in sorted(calls.items(), key=lambda x: -x[1])[:8]}
        else:
            out.update({f"{k}_cpu_us_per_req": round(v * 1e6 / n, 1) for k, v in cpu.items()})
        if statuses.get(202) != n:
            raise RuntimeError(f"not every request got 202: {statuses}")
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        fh.close()
        if not a.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def forwarder_only(a: argparse.Namespace, bootstrap: str, bodies: list[Path], work: Path) -> dict[str, Any]:
    """The forwarder alone under callgrind: ``bench.forward`` drains a prefilled spool of ``--events`` bodies
    in chunks of ``--forward-batch-events``; only the drain is counted (the prefill is not)."""
    out_dir = Path(tempfile.mkdtemp(prefix="fwd-", dir=work))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
    env.update(PYTHONHASHSEED="0", BENCH_CALLGRIND="1", TPIPE_FORWARD_BATCH_EVENTS=str(a.forward_batch_events))
    cmd = ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--dump-instr=no",
           f"--callgrind-out-file={out_dir}/cg.%p", sys.executable, "-m", "bench.forward", "--kafka", bootstrap,
           "--prefix", f"rpf{os.getpid()}", "--events", str(a.events), "--vins", "8", "--mode", "forwarder",
           *map(str, bodies[:3])]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"bench.forward failed: {res.stderr[-2000:]}")
    dumps = sorted(out_dir.glob("cg.*.*"))
    if not dumps:
        raise RuntimeError(f"no callgrind dump in {out_dir}")
    pid = int(dumps[0].name.split(".")[1])
    total = _dumped_instructions(out_dir, pid)
    return {"mode": "forwarder-only", "events": a.events, "forward_batch_events": a.forward_batch_events,
            "forwarder_instructions": total, "forwarder_instructions_per_event": round(total / a.events)}


def summarize(a: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    roles = ("receiver", "forwarder")
    if a.mode == "syscalls":
        return {f"{k}_syscalls_per_req": [r[f"{k}_syscalls_per_req"] for r in runs] for k in roles}
    if a.mode == "cpu":
        out: dict[str, Any] = {}
        for k in roles:
            xs = [r[f"{k}_cpu_us_per_req"] for r in runs]
            out[f"{k}_cpu_us_per_req"] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
        tot = [r["receiver_cpu_us_per_req"] + r["forwarder_cpu_us_per_req"] for r in runs]
        out["total_cpu_us_per_req"] = {"median": statistics.median(tot), "min": min(tot), "max": max(tot)}
        return out
    out = {f"{k}_instructions_per_req": [r[f"{k}_instructions_per_req"] for r in runs] for k in roles}
    sizes = sorted({r["requests"] for r in runs})
    if len(sizes) >= 2:
        lo = [r for r in runs if r["requests"] == sizes[0]]
        hi = [r for r in runs if r["requests"] == sizes[-1]]
        for k in roles:
            slope = (statistics.mean(r[f"{k}_instructions"] for r in hi)
                     - statistics.mean(r[f"{k}_instructions"] for r in lo)) / (sizes[-1] - sizes[0])
            out[f"{k}_instructions_per_req_slope"] = round(slope)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("callgrind", "cpu", "syscalls", "forwarder"), default="callgrind",
                    help="forwarder: the forwarder alone under callgrind, draining a prefilled spool (--events)")
    ap.add_argument("--events", type=int, default=6000, help="forwarder mode: bodies in the prefilled spool")
    ap.add_argument("--forward-batch-events", type=int, default=1000, help="forwarder mode: chunk size")
    ap.add_argument("--requests", default=None, help="comma-separated request counts, one run each "
                    "(default: 2000,4000 with callgrind, 20000 with cpu)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each request count")
    ap.add_argument("--concurrency", type=int, default=16, help="keep-alive connections sending at once")
    ap.add_argument("--wrk-seconds", type=float, default=0.0,
                    help="cpu mode: load with wrk at its maximum rate for this long instead of N requests")
    ap.add_argument("--kafka", default=None, help="an existing broker (default: start a local one)")
    ap.add_argument("--receiver-arg", action="append", default=[], help="extra `tpipe serve` flag (repeatable)")
    ap.add_argument("--vins", type=int, default=8)
    ap.add_argument("--idle-s", type=float, default=10.0,
                    help="callgrind: seconds of an idle window measured first, subtracted per second of the runs")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (callgrind dumps, logs)")
    a = ap.parse_args(argv)
    if a.mode in ("callgrind", "forwarder") and not shutil.which("valgrind"):
        from bench.infra import ensure_tool

        ensure_tool("valgrind", "valgrind")
    sizes = [int(x) for x in (a.requests or ("2000,4000" if a.mode == "callgrind" else "20000")).split(",")]
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="tpipe-rprof-"))
    log(f"work dir {work}; corpus {FIXTURES}")
    bodies = make_bodies(work, a.vins)
    broker = None
    try:
        bootstrap = a.kafka
        if bootstrap is None:
            from localbroker import LocalBroker

            broker = LocalBroker(data_dir=work / "kafka")
            broker.start()
            bootstrap = broker.bootstrap
        if a.mode == "forwarder":
            out = [forwarder_only(a, bootstrap, bodies, work) for _ in range(a.repeat)]
            for r in out:
                log(json.dumps(r))
            sys.stdout.write(json.dumps({"runs": out}) + "\n")
            return 0
        runs = []
        for _ in range(a.repeat):
            for n in sizes:
                r = run_once(a, bootstrap, n, bodies, work)
                log(json.dumps(r))
                runs.append(r)
        summary = {"mode": a.mode, "receiver_args": a.receiver_arg, "runs": runs, **summarize(a, runs)}
        sys.stdout.write(json.dumps(summary) + "\n")
    finally:
        if broker is not None:
            broker.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
