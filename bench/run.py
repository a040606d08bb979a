"""``make bench``: the receiver, forwarder and lake worker against same-run baselines, as ratios.

    python -m bench.run [--window 8] [--warmup 2] [--rounds 3] [--outage 120] [--only http,latency,...]

Phases (each bounded; see docs/performance.md for the method):

* ``http``     max throughput: ``wrk -t1 -c64`` (Lua rotation over 0.5/1.5/3 KB events) against ``POST /webhook``
               (spool mode, real local broker) and against a bare Starlette no-op endpoint, alternated;
               the receiver's spool depth is sampled from ``/healthz`` during its runs.
* ``latency``  open-loop fixed rate (``bench.openloop``) at half the receiver's maximum, both endpoints, p99.
* ``forwarder`` spool -> Kafka (``bench.forward``) vs a raw aiokafka ``send()`` loop, same producer config.
* ``lake``     ``tpipe consume telemetry`` events/s vs a raw ``getmany`` loop (``bench.lake``).
* ``outage``   receiver RSS while the broker is SIGKILLed, at half the maximum rate (``--outage`` seconds).

Servers run on CPU 0 (``taskset -c 0``); this process, the load generators and the broker on CPU 1.
Writes ``bench/results/<timestamp>.json`` and ``.png`` and prints medians, ratios and targets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "events" / "bench"
RESULTS = ROOT / "bench" / "results"
LUA = Path(__file__).resolve().parent / "wrk_rotate.lua"
TOKEN = "bench-token-5f1c2a9e"
PY = sys.executable
NICE: list[str] = []  # ["nice", "-n", "-5"] with --nice: servers and load generators ahead of other load

TARGETS = {
    "ingest_ratio_min": 0.75,
    "p99_ms_max": 10.0,
    "p99_ratio_max": 3.0,
    "forwarder_ratio_min": 0.8,
    "lake_ratio_min": 0.3,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------- setup


def ensure_tool(binary: str, package: str) -> str:
    """The Debian tool, installed with apt-get when missing (make bench works on a clean machine)."""
    path = shutil.which(binary)
    if path:
        return path
    log(f"{binary} not found: apt-get install -y {package}")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package], check=True, env=env)
    path = shutil.which(binary)
    if not path:
        raise SystemExit(f"could not install {binary} ({package})")
    return path


def make_bodies(workdir: Path, vins: int) -> list[Path]:
    """The fixed corpus: each bench fixture (0.5, 1.5, 3 KB) for ``vins`` VINs, interleaved by size."""
    out: list[Path] = []
    srcs = [FIXTURES / f"data_{s}.json" for s in ("0.5kb", "1.5kb", "3kb")]
    for v in range(vins):
        for src in srcs:
            obj = orjson.loads(src.read_bytes())
            obj["vin"] = f"5YJ3BENCH{v:08d}"
            p = workdir / f"body_{v:02d}_{src.stem}.json"
            p.write_bytes(orjson.dumps(obj))
            out.append(p)
    return out


def env_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "nproc": os.cpu_count(),
                            "platform": platform.platform()}
    with contextlib.suppress(Exception):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception):
        info["mem_total_kb"] = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    with contextlib.suppress(Exception):
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    from importlib.metadata import version

    for pkg in ("aiokafka", "uvicorn", "starlette", "uvloop", "httptools", "orjson"):
        with contextlib.suppress(Exception):
            info[pkg] = version(pkg)
    with contextlib.suppress(Exception):
        info["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return info


def free_port() -> int:
    from localbroker import free_port as fp

    return fp()


# ----------------------------------------------------------------------------------------- servers


def proc_cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server subprocess pinned to CPU 0."""

    def __init__(self, name: str, cmd: list[str], port: int, log_path: Path, pin: list[str]) -> None:
        self.name, self.cmd, self.port, self.log_path, self.pin = name, cmd, port, log_path, pin
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
        fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*NICE, *self.pin, *self.cmd], stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: see {self.log_path}")
            with contextlib.suppress(OSError):
                if get_json(self.url + "/healthz", 1.0) is not None:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s: see {self.log_path}")

    def rss_kb(self) -> int | None:
        if self.proc is None:
            return None
        try:
            m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{self.proc.pid}/status").read_text())
        except OSError:
            return None
        return int(m.group(1)) if m else None

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process (all threads)."""
        assert self.proc is not None
        return proc_cpu_s(self.proc.pid)

    def children_cpu_s(self) -> float:
        """CPU seconds of the server's live child processes (the receiver's forwarder process)."""
        assert self.proc is not None
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                f = stat.read_text().rpartition(")")[2].split()
                if int(f[1]) == self.proc.pid:
                    total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_drained(srv: Server, timeout: float = 120.0) -> float:
    """Seconds until the receiver's spool is empty (raises after ``timeout``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(OSError, ValueError):
            if get_json(srv.url + "/healthz")["spool"]["pending_events"] == 0:
                return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"spool of {srv.name} not drained in {timeout}s")


class Sampler:
    """Samples fn() every ``every`` seconds on a thread: list of (t, value)."""

    def __init__(self, fn: Callable[[], Any], every: float) -> None:
        self.fn, self.every = fn, every
        self.samples: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append((round(time.monotonic() - self.t0, 3), self.fn()))
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (units per second)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


# ------------------------------------------------------------------------------------------ loads


def run_wrk(url: str, seconds: float, bodies: list[Path], conns: int = 64) -> dict[str, Any]:
    cmd = [*NICE, "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(LUA),
           url + "/webhook", "--", TOKEN, *map(str, bodies)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    errors = sum(v for k, v in r.items() if k.startswith("errors_"))
    return {"req_per_s": r["requests"] / secs, "requests": r["requests"], "errors": errors,
            "non_2xx": r["errors_status"], "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000}


def run_openloop(url: str, rate: float, warmup: float, duration: float, bodies: list[Path]) -> dict[str, Any]:
    cmd = [*NICE, PY, "-m", "bench.openloop", "--url", url + "/webhook", "--rate", f"{rate:.0f}",
           "--warmup", str(warmup), "--duration", str(duration), "--token", TOKEN, *map(str, bodies)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=warmup + duration + 120, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"openloop failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_json(cmd: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratio_stats(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """Median, min and max of per-pair ratios candidate/baseline."""
    rs = [c / b for c, b in pairs if b]
    return {"median": med(rs), "min": min(rs, default=float("nan")), "max": max(rs, default=float("nan"))}


# ------------------------------------------------------------------------------------------ bench


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.stamp = time.strftime("%Y%m%dT%H%M%S")
        self.workdir = Path(tempfile.mkdtemp(prefix="tpipe-bench-"))
        self.pin0 = ["taskset", "-c", "0"] if (os.cpu_count() or 1) >= 2 and not a.no_pin else []
        self.res: dict[str, Any] = {"timestamp": self.stamp, "args": vars(a), "env": env_info(),
                                    "targets": TARGETS, "phases": {}}
        self.bodies = make_bodies(self.workdir, a.vins)
        self.res["corpus"] = {"bodies": len(self.bodies), "sizes": sorted({p.stat().st_size for p in self.bodies})}
        self.broker: Any = None
        self.servers: list[Server] = []
        self.max_rps: float | None = a.rate

    # -- infra --------------------------------------------------------------------------------------
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

    # -- phases -------------------------------------------------------------------------------------
    def phase_http(self, noop: Server, rcv: Server) -> None:
        a = self.a
        runs: list[dict[str, Any]] = []
        for rnd in range(a.rounds):
            for name, srv in (("noop", noop), ("webhook", rcv)):
                run_wrk(srv.url, a.warmup, self.bodies)  # warm-up
                samples: list[tuple[float, Any]] = []
                cpu0, load0 = srv.cpu_s(), os.getloadavg()[0]
                child0 = srv.children_cpu_s()
                if name == "webhook":
                    def depth(url: str = srv.url) -> int:
                        return int(get_json(url + "/healthz")["spool"]["pending_events"])

                    with Sampler(depth, 0.5) as smp:
                        r = run_wrk(srv.url, a.window, self.bodies)
                    samples = smp.samples
                    r["spool_depth"] = samples
                    r["spool_depth_max"] = max((v for _, v in samples), default=None)
                    r["spool_growth_events_per_s"] = slope([(t, float(v)) for t, v in samples])
                    r["drain_after_s"] = wait_drained(srv)
                else:
                    r = run_wrk(srv.url, a.window, self.bodies)
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
                    f"(+ forwarder process {r['forwarder_cpu_us_per_req']:.0f}), "
                    f"load {load0:.1f}{extra}")
        noop_r = [r["req_per_s"] for r in runs if r["endpoint"] == "noop"]
        hook_r = [r["req_per_s"] for r in runs if r["endpoint"] == "webhook"]
        growth = [r["spool_growth_events_per_s"] for r in runs if r["endpoint"] == "webhook"]
        noop_c = [r["server_cpu_us_per_req"] for r in runs if r["endpoint"] == "noop"]
        hook_c = [r["server_cpu_us_per_req"] for r in runs if r["endpoint"] == "webhook"]
        fwd_c = [r["forwarder_cpu_us_per_req"] for r in runs if r["endpoint"] == "webhook"]
        self.max_rps = self.max_rps or med(hook_r)
        self.res["phases"]["http"] = {
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

    def phase_latency(self, noop: Server, rcv: Server) -> None:
        a = self.a
        if self.max_rps is None:
            log("latency: measuring the receiver's max rate first (one wrk run)")
            run_wrk(rcv.url, a.warmup, self.bodies)
            self.max_rps = run_wrk(rcv.url, a.window, self.bodies)["req_per_s"]
            wait_drained(rcv)
        rate = round(self.max_rps / 2)
        runs: list[dict[str, Any]] = []
        for rnd in range(a.rounds):
            for name, srv in (("noop", noop), ("webhook", rcv)):
                r = run_openloop(srv.url, rate, a.warmup, a.window, self.bodies)
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
        self.res["phases"]["latency"] = {
            "rate": rate, "runs": runs, "generator_lag_p99_ms_max": max(lags, default=None), "noop_p99_median_ms": med(noop_p), "webhook_p99_median_ms": med(hook_p),
            "p99_ratio": ratio_stats(list(zip(hook_p, noop_p, strict=True))),
        }

    def phase_forwarder(self) -> None:
        a = self.a
        runs: list[dict[str, Any]] = []
        prefix = f"benchfw{self.stamp[-6:]}"
        for rnd in range(a.rounds):
            for mode in ("raw", "forwarder"):
                cmd = [*self.pin0, PY, "-m", "bench.forward", "--kafka", self.broker.bootstrap, "--prefix", prefix,
                       "--events", str(a.forward_events), "--mode", mode, *map(str, self.bodies[:3])]
                r = run_json(cmd, 600)
                r["round"] = rnd
                runs.append(r)
                log(f"forwarder round {rnd} {mode}: {r['events_per_s']:.0f} events/s ({r['seconds']:.2f} s)")
        raw = [r["events_per_s"] for r in runs if r["mode"] == "raw"]
        fw = [r["events_per_s"] for r in runs if r["mode"] == "forwarder"]
        self.res["phases"]["forwarder"] = {"runs": runs, "raw_median": med(raw), "forwarder_median": med(fw),
                                           "ratio": ratio_stats(list(zip(fw, raw, strict=True)))}

    def phase_lake(self) -> None:
        a = self.a
        prefix = f"benchlake{self.stamp[-6:]}"
        n = a.lake_events
        log(f"lake: pre-filling {n} events into {prefix}.data")
        run_json([PY, "-m", "bench.lake", "prefill", "--kafka", self.broker.bootstrap, "--prefix", prefix,
                  "--events", str(n), "--bodies", *map(str, self.bodies[:3])], 600)
        runs: list[dict[str, Any]] = []
        for rnd in range(a.rounds):
            r = run_json([*self.pin0, PY, "-m", "bench.lake", "raw", "--kafka", self.broker.bootstrap,
                          "--prefix", prefix, "--events", str(n)], 600)
            r.update(mode="raw", round=rnd)
            runs.append(r)
            log(f"lake round {rnd} raw getmany: {r['events_per_s']:.0f} events/s")
            w = self._lake_worker(prefix, n, rnd)
            w.update(mode="worker", round=rnd)
            runs.append(w)
            log(f"lake round {rnd} telemetry worker: {w['events_per_s']:.0f} events/s "
                f"(first commit at {w['first_count']} events; wall {w['wall_events_per_s']:.0f}/s)")
        raw = [r["events_per_s"] for r in runs if r["mode"] == "raw"]
        wk = [r["events_per_s"] for r in runs if r["mode"] == "worker"]
        self.res["phases"]["lake"] = {"events": n, "runs": runs, "raw_median": med(raw), "worker_median": med(wk),
                                      "ratio": ratio_stats(list(zip(wk, raw, strict=True)))}

    def _lake_worker(self, prefix: str, n: int, rnd: int) -> dict[str, Any]:
        d = self.workdir / f"lake-{rnd}"
        d.mkdir()
        mport = free_port()
        cmd = [PY, "-m", "tpipe.cli", "consume", "telemetry", "--kafka", self.broker.bootstrap,
               "--topic-prefix", prefix, "--catalog-uri", f"sqlite:///{d}/catalog.db", "--warehouse", str(d / "wh"),
               "--metrics-port", str(mport), "--metrics-addr", "127.0.0.1", "--group-id", f"benchlake-{rnd}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
        proc = subprocess.Popen([*self.pin0, *cmd], stdout=open(d / "worker.log", "ab"), stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT)
        pat = re.compile(rb'^tpipe_worker_records_processed_total\{worker="telemetry"\} ([0-9.e+]+)', re.M)
        t_ready = t_first = None
        first = 0
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"telemetry worker exited {proc.returncode}: {d / 'worker.log'}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=1) as r:
                        body = r.read()
                except OSError:
                    time.sleep(0.05)
                    continue
                now = time.monotonic()
                t_ready = t_ready or now
                m = pat.search(body)
                count = int(float(m.group(1))) if m else 0
                if count > 0 and t_first is None:
                    t_first, first = now, count
                if count >= n:
                    t_end = now
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"telemetry worker did not finish {n} events in 300 s")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert t_first is not None and t_ready is not None
        steady = (n - first) / (t_end - t_first) if t_end > t_first and n > first else None
        wall = n / (t_end - t_ready)
        return {"events": n, "first_count": first, "events_per_s": steady or wall, "wall_events_per_s": wall,
                "seconds_ready_to_done": t_end - t_ready}

    def phase_outage(self) -> None:
        a = self.a
        # room for the whole outage's backlog (~1.7 KB per body), so the phase measures memory, not spool-full 503s
        backlog_bytes = int((self.max_rps or 20000) / 2 * (a.outage + 30) * 1700 * 1.5)
        rcv = self.receiver("outage", "--spool-max-bytes", str(max(1 << 30, backlog_bytes)))
        if self.max_rps is None:
            run_wrk(rcv.url, a.warmup, self.bodies)
            self.max_rps = run_wrk(rcv.url, a.window, self.bodies)["req_per_s"]
            wait_drained(rcv)
        rate = round(self.max_rps / 2)
        pre, post = 5.0, 5.0
        total = pre + a.outage + post
        log(f"outage: {rate} req/s for {total:.0f} s; broker killed at {pre:.0f} s for {a.outage:.0f} s")

        def sample() -> dict[str, Any]:
            h = get_json(rcv.url + "/healthz")
            return {"rss_kb": rcv.rss_kb(), "pending": h["spool"]["pending_events"], "broker_up": h["broker"]["up"]}

        box: dict[str, Any] = {}
        load = threading.Thread(target=lambda: box.update(r=run_openloop(rcv.url, rate, 0, total, self.bodies)))
        with Sampler(sample, 1.0) as smp:
            load.start()
            time.sleep(pre)
            self.broker.kill()
            t_kill = time.monotonic() - smp.t0
            time.sleep(a.outage)
            t_back = time.monotonic() - smp.t0
            self.broker.restart()
            load.join()
            drain = wait_drained(rcv, timeout=max(120.0, a.outage * 2))
        series = smp.samples
        during = [(t, v["rss_kb"] / 1024) for t, v in series if t_kill + 10 <= t <= t_back and v["rss_kb"]]
        rss_start = next((v["rss_kb"] / 1024 for t, v in series if t >= t_kill and v["rss_kb"]), None)
        rss_end = during[-1][1] if during else None
        growth = (rss_end - during[0][1]) if during else None
        load_r = box.get("r", {})
        self.res["phases"]["outage"] = {
            "rate": rate, "outage_s": a.outage, "t_kill": t_kill, "t_restart": t_back, "samples": series,
            "rss_mb_at_kill": rss_start, "rss_mb_end": rss_end, "rss_growth_mb": growth,
            "rss_slope_mb_per_min": slope(during) * 60, "pending_max": max((v["pending"] for _, v in series), default=0),
            "drain_after_restart_s": drain, "load": load_r,
            "flat": growth is not None and growth <= max(16.0, 0.1 * (rss_start or 0)),
        }
        log(f"outage: RSS {rss_start:.1f} -> {rss_end:.1f} MB (growth {growth:.1f} MB, "
            f"{slope(during) * 60:.2f} MB/min), spool max {self.res['phases']['outage']['pending_max']} events, "
            f"drained {drain:.1f} s after restart; load status {load_r.get('status')}")
        rcv.stop()

    def profile_receiver(self, rcv: Server) -> None:
        spy = str(Path(PY).parent / "py-spy")
        if not Path(spy).exists():  # a bench-only tool: installed into the venv on demand
            log("pip install py-spy (bench only)")
            subprocess.run([PY, "-m", "pip", "install", "-q", "py-spy"], check=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"{self.stamp}-receiver.folded"
        assert rcv.proc is not None
        prof = subprocess.Popen([spy, "record", "-o", str(out), "-f", "raw", "-d", str(int(self.a.window)),
                                 "-r", "250", "-p", str(rcv.proc.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        r = run_wrk(rcv.url, self.a.window, self.bodies)
        prof.wait(60)
        wait_drained(rcv)
        log(f"profile: {out} (collapsed stacks, during a {r['req_per_s']:.0f} req/s run); top frames:")
        for line in top_frames(out):
            print("   ", line)
        self.res["profile"] = {"folded": str(out), "top": top_frames(out)}

    # -- driver -------------------------------------------------------------------------------------
    def run(self) -> None:
        phases = [p.strip() for p in self.a.only.split(",") if p.strip()]
        self.start_broker()
        if {"http", "latency", "profile"} & set(phases):
            noop, rcv = self.noop(), self.receiver("main")
            if "profile" in phases:
                self.profile_receiver(rcv)
            if "http" in phases:
                self.phase_http(noop, rcv)
            if "latency" in phases:
                self.phase_latency(noop, rcv)
            noop.stop()
            rcv.stop()
        if "forwarder" in phases:
            self.phase_forwarder()
        if "lake" in phases:
            self.phase_lake()
        if "outage" in phases and self.a.outage > 0:
            self.phase_outage()


# ---------------------------------------------------------------------------------------- reports


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


def summarize(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows: (figure, value, target, verdict)."""
    ph, t = res["phases"], res["targets"]
    rows: list[tuple[str, str, str, str]] = []

    def ok(b: bool) -> str:
        return "PASS" if b else "MISS"

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
    if "outage" in ph:
        o = ph["outage"]
        rows.append((f"receiver RSS, {o['outage_s']:.0f} s broker outage @ {o['rate']}/s",
                     f"{o['rss_mb_at_kill']:.1f} -> {o['rss_mb_end']:.1f} MB (growth {o['rss_growth_mb']:.1f} MB, "
                     f"{o['rss_slope_mb_per_min']:.2f} MB/min); spool max {o['pending_max']}",
                     "flat", ok(o["flat"])))
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
        bars(axes[1][1], ph["lake"]["runs"], "mode", "events_per_s", ("raw", "worker"),
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each run")
    ap.add_argument("--rounds", type=int, default=3, help="baseline/candidate alternations")
    ap.add_argument("--outage", type=float, default=120.0, help="broker outage seconds (0: skip the phase)")
    ap.add_argument("--only", default="http,latency,forwarder,lake,outage",
                    help="comma-separated phases: http,latency,forwarder,lake,outage,profile")
    ap.add_argument("--rate", type=float, default=None, help="max rate to halve (default: measured in http)")
    ap.add_argument("--forward-events", type=int, default=60000)
    ap.add_argument("--forwarder-cpus", default="1",
                    help="the receivers' forwarder process CPUs (--forwarder-cpus of tpipe serve; '' = same as the server)")
    ap.add_argument("--lake-events", type=int, default=60000)
    ap.add_argument("--vins", type=int, default=8, help="VINs per fixture in the HTTP corpus")
    ap.add_argument("--receiver-arg", action="append", default=[],
                    help="extra `tpipe serve` argument (repeatable, e.g. --receiver-arg=--spool-commit-delay-ms=1)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    ap.add_argument("--nice", type=int, default=0,
                    help="run servers and load generators at this nice value (e.g. -5, as root) on a shared machine")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, spools)")
    a = ap.parse_args(argv)

    os.chdir(ROOT)
    if (os.cpu_count() or 1) >= 2 and not a.no_pin:
        os.sched_setaffinity(0, {1})  # this process, the load generators and the broker: CPU 1
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
    rows = summarize(res)
    res["summary"] = [dict(zip(("figure", "value", "target", "verdict"), r, strict=True)) for r in rows]
    jpath.write_text(json.dumps(res, indent=1, default=str))
    ppath = RESULTS / f"{bench.stamp}.png"
    chart(res, ppath)
    print()
    w = max((len(r[0]) for r in rows), default=10)
    for fig_, val, tgt, verdict in rows:
        print(f"{verdict:5} {fig_:<{w}}  {val}   (target {tgt})")
    print(f"\nresults: {jpath}\nchart:   {ppath}\nelapsed: {res['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
