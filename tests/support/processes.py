"""Real ``tpipe`` processes: the environment they get, waiting for one to be healthy, a receiver
subprocess (``new_receiver``) and a steady webhook load against it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from localbroker import free_port
from schemas.parse import parse_body
from tests.support.paths import REPO

TOKEN = "fault-token-0b7d4e"


def tpipe_env(**extra: str) -> dict[str, str]:
    """The environment for a ``tpipe`` subprocess: the test's own without any ``TPIPE_*`` variable (only
    what the test sets applies), this checkout first on ``PYTHONPATH``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_tail: Callable[[], str], timeout: float = 60.0) -> None:
    """Poll ``url`` (a ``/healthz``) until it answers 200; fail with ``log_tail()`` if ``proc`` exits
    first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited {proc.returncode}:\n{log_tail()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # readiness poll interval
    raise AssertionError(f"not healthy in {timeout}s ({url}):\n{log_tail()}")


@dataclass
class ReceiverAddress:
    """Where a receiver listens: the webhook on ``port``; with an ops port (``--ops-port``),
    ``/healthz``, ``/readyz`` and ``/metrics`` there, else on ``port`` too."""

    port: int
    ops_port: int | None = field(default=None, kw_only=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port or self.port}"


def series_value(metrics_text: str, series: str) -> float:
    """The value of one series (``name`` or ``name{label="v"}``) in a ``/metrics`` page; 0 when absent."""
    for line in metrics_text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@dataclass
class ReceiverProcess(ReceiverAddress):
    """``tpipe serve`` as a subprocess: flags for the port, Kafka, token, spool and topic prefix, then
    ``extra``; output appended to ``log_path``."""

    spool_dir: Path
    kafka: str
    prefix: str
    log_path: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ReceiverProcess:
        cmd = [
            sys.executable, "-m", "tpipe.cli", "serve",
            "--port", str(self.port), "--kafka", self.kafka, "--token", TOKEN,
            "--spool-dir", str(self.spool_dir), "--topic-prefix", self.prefix, *self.extra,
        ]
        if self.ops_port is not None:
            cmd += ["--ops-port", str(self.ops_port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=tpipe_env())
        wait_healthy(self.ops_url + "/healthz", self.proc, self.log_tail, timeout)
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def metric(self, series: str) -> float:
        """The value of one series (``name`` or ``name{label="v"}``) on ``/metrics``; 0 when absent."""
        return series_value(httpx.get(self.ops_url + "/metrics", timeout=5).text, series)

    def health(self) -> dict[str, object]:
        return httpx.get(self.ops_url + "/healthz", timeout=5).json()  # type: ignore[no-any-return]

    async def wait_drained(self, timeout: float = 90.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                h = (await client.get(self.ops_url + "/healthz")).json()
                if h["spool"]["pending_events"] == 0:
                    return h  # type: ignore[no-any-return]
                await asyncio.sleep(0.1)
        raise AssertionError(f"spool not drained in {timeout}s: {h}\n{self.log_tail()}")


def new_receiver(tmp: Path, kafka: str, prefix: str, *extra: str) -> ReceiverProcess:
    return ReceiverProcess(free_port(), tmp / "spool", kafka, prefix, tmp / "receiver.log", list(extra))


@dataclass
class LoadResult:
    sent: int = 0
    acked: dict[str, int] = field(default_factory=dict)  # event_id -> count of 2xx
    non_2xx: dict[int, int] = field(default_factory=dict)  # status -> count
    transport_errors: int = 0
    refused_ids: set[str] = field(default_factory=set)  # ids of bodies that got a non-2xx

    @property
    def non_2xx_total(self) -> int:
        return sum(self.non_2xx.values())


def event_body(worker: int, seq: int) -> bytes:
    vin = f"5YJ3E1EA{worker:03d}{seq % 7:06d}"[:17]
    return orjson.dumps(
        {
            "createdAt": f"2025-06-01T12:{(seq // 60) % 60:02d}:{seq % 60:02d}.{worker:03d}Z",
            "vin": vin,
            "data": {"VehicleSpeed": seq % 130, "BatteryLevel": 80 - seq % 50, "Seq": seq, "Worker": worker},
        }
    )


async def steady_load(url: str, stop: asyncio.Event, *, concurrency: int = 4, result: LoadResult | None = None,
                      pace_s: float = 0.002) -> LoadResult:
    """POST unique events until ``stop`` is set; records every acknowledged event_id."""
    res = result or LoadResult()

    async def one(worker: int) -> None:
        seq = 0
        async with httpx.AsyncClient(timeout=30) as client:
            while not stop.is_set():
                body = event_body(worker, seq)
                seq += 1
                res.sent += 1
                try:
                    r = await client.post(url + "/webhook", content=body, headers={"Authorization": f"Bearer {TOKEN}"})
                except httpx.HTTPError:
                    res.transport_errors += 1
                    await asyncio.sleep(0.05)  # the receiver is down: back off like a real sender
                    continue
                if 200 <= r.status_code < 300:  # the ids the forwarder gives these events (createdAt is set)
                    for env in parse_body(body, received_at_ms=0):
                        res.acked[env.event_id] = res.acked.get(env.event_id, 0) + 1
                else:
                    res.non_2xx[r.status_code] = res.non_2xx.get(r.status_code, 0) + 1
                await asyncio.sleep(pace_s)  # a steady, not flat-out, sender

    await asyncio.gather(*(one(w) for w in range(concurrency)))
    return res
