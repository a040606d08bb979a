"""What every bench phase uses: logging, tools, server processes pinned to a CPU, CPU accounting from
/proc, samplers, load generators (wrk, the open-loop generator), statistics over alternated rounds."""

from __future__ import annotations

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
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "events" / "bench"
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / ".cache" / "bench"
LUA = Path(__file__).resolve().parent / "wrk_rotate.lua"
TOKEN = "bench-token-5f1c2a9e"
PY = sys.executable
NICE: list[str] = []  # ["nice", "-n", "-5"] with --nice: servers and load generators ahead of other load
CLK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    from localbroker import free_port as fp

    return fp()


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


def make_bodies(workdir: Path, vins: int) -> list[Path]:
    """The fixed corpus: each bench fixture (0.5, 1.5, 3 KB) for ``vins`` VINs, interleaved by size."""
    import orjson

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


# ------------------------------------------------------------------------------------- processes


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 once it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


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
        return sum(proc_cpu_s(pid) for pid in child_pids(self.proc.pid))

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


# ----------------------------------------------------------------------------------------- loads


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
    """Median, min and max of per-pair ratios candidate/baseline (pairs from the same round)."""
    rs = [c / b for c, b in pairs if b and c is not None]
    return {"median": med(rs), "min": min(rs, default=float("nan")), "max": max(rs, default=float("nan"))}
