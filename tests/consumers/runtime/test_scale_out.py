"""Two telemetry workers on one host, started with the README's scale-out command, on a new broker.

Both run (one consumer group, the partitions split between them), each serves its metrics on a port
of its own (``--metrics-port 0``: printed and logged), a third copy on a taken port stops at once with
a one-line error, the first start on a fresh broker logs no error about the group coordinator, and
``--log-format console`` gives readable lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from localbroker import LocalBroker

pytestmark = pytest.mark.kafka

PREFIX = "scale"
PARTITIONS = 4


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}


def _worker(home: Path, bootstrap: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tpipe.cli", "--log-format", "console", "consume", "telemetry",
           "--kafka", bootstrap, "--topic-prefix", PREFIX, "--home", str(home), *extra]
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env())


def _assignment(log: Path) -> set[str] | None:
    """The worker's latest assignment (console log: ``partitions assigned ... partitions=[...]``)."""
    found = None
    for line in log.read_text(errors="replace").splitlines():
        if "partitions assigned" in line:
            m = re.search(r"partitions=(\[.*?\])", line)
            if m:
                found = set(orjson.loads(m.group(1)))
    return found


def _metrics_port(log: Path) -> int | None:
    m = re.search(r"metrics on http://[^:]+:(\d+)/metrics", log.read_text(errors="replace"))
    return int(m.group(1)) if m else None


def test_two_telemetry_workers_share_the_partitions(local_broker_factory: Callable[..., LocalBroker],
                                                    tmp_path: Path) -> None:
    broker = local_broker_factory().start()  # a new broker: its group coordinator is not elected yet
    env = _env()
    created = subprocess.run(
        [sys.executable, "-m", "tpipe.cli", "topics", "create", "--partitions", str(PARTITIONS),
         "--kafka", broker.bootstrap, "--topic-prefix", PREFIX], capture_output=True, text=True, env=env, timeout=60)
    assert created.returncode == 0, created.stderr
    home = tmp_path / "var"
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    # the README's command, twice
    procs = [_worker(home, broker.bootstrap, log, "--metrics-port", "0") for log in logs]
    try:
        all_parts = {f"{PREFIX}.{t}:{p}" for t in ("data", "state", "connectivity", "vehicle_data")
                     for p in range(PARTITIONS)}
        deadline = time.monotonic() + 120
        while True:
            for p, log in zip(procs, logs, strict=True):
                assert p.poll() is None, f"a worker exited {p.returncode}:\n{log.read_text()}"
            a, b = (_assignment(log) for log in logs)
            if a and b and not (a & b) and (a | b) == all_parts:
                break
            assert time.monotonic() < deadline, f"no split assignment: {a} / {b}\n{logs[0].read_text()[-3000:]}"
            time.sleep(0.2)  # poll the logs while the group rebalances

        ports = [_metrics_port(log) for log in logs]
        assert all(ports) and ports[0] != ports[1], ports
        for port in ports:
            scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert scrape.status_code == 200 and "tpipe_worker" in scrape.text
        for log in logs:  # the port is also in the log, on a readable console line
            text = log.read_text()
            assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} INFO +consumers\.runtime  metrics server listening .*port=\d+",
                             text, re.M), text[:2000]
            assert not text.lstrip().startswith("{")  # console, not JSON

        # a third copy on a port that is taken: one line, exit 2, before it touches Kafka
        third = subprocess.run(
            [sys.executable, "-m", "tpipe.cli", "consume", "telemetry", "--kafka", broker.bootstrap,
             "--topic-prefix", PREFIX, "--home", str(home), "--metrics-port", str(ports[0])],
            capture_output=True, text=True, env=env, timeout=60)
        assert third.returncode == 2
        assert third.stderr.count("\n") == 1 and "Traceback" not in third.stderr, third.stderr
        assert f":{ports[0]}" in third.stderr and "--metrics-port 0" in third.stderr
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=60) for p in procs]
    assert codes == [0, 0]
    for log in logs:  # the young coordinator streak of a new broker is not an error
        errors = [ln for ln in log.read_text().splitlines() if " ERROR " in ln]
        assert not errors, errors
