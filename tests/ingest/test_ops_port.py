"""``tpipe serve --ops-port`` as a real process (CLI flags, uvloop, forwarder process): the ops paths and
the webhook on separate ports, health output without broker addresses, the edge timeout in force."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from localbroker import free_port
from tests.support.edge_harness import BODY, connect, read_until_closed
from tests.support.processes import TOKEN, ReceiverProcess

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


async def test_ops_port_serves_only_ops_paths_and_health_hides_broker_addresses(tmp_path: Path) -> None:
    dead = free_port()  # Kafka "runs" where nothing listens: spool mode accepts anyway
    rx = ReceiverProcess(free_port(), tmp_path / "spool", f"127.0.0.1:{dead}", "tops", tmp_path / "receiver.log",
                         ["--header-timeout-s", "1", "--drain-timeout-s", "1"], ops_port=free_port())
    await asyncio.to_thread(rx.start)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for path in OPS_PATHS:
                assert (await client.get(rx.ops_url + path)).status_code == 200, path
                assert (await client.get(rx.url + path)).status_code == 404, f"{path} on the webhook port"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert (await client.post(rx.ops_url + "/webhook", content=BODY, headers=auth)).status_code == 404
            r = await client.post(rx.url + "/webhook", content=BODY, headers=auth)
            assert r.status_code == 202, r.text

            # the forwarder tries Kafka for that body and fails; /healthz and /readyz say so, without where
            deadline = time.monotonic() + 30
            while (health := (await client.get(rx.ops_url + "/healthz")).json())["broker"]["last_error"] is None:
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.1)
            ready = (await client.get(rx.ops_url + "/readyz")).json()
        for status in (health, ready):
            error = status["broker"]["last_error"]
            assert error.startswith("KafkaConnectionError") and "<address>" in error, error
            assert "127.0.0.1" not in error and str(dead) not in error and "AddressFamily" not in error, error
        assert f"127.0.0.1', {dead}" in rx.log_tail(200), "the log keeps the full error for operators"

        # --header-timeout-s reached the server: a silent connection to the webhook port is closed
        t0 = time.monotonic()
        reader, writer = await connect(rx.port)
        closed_at, data = await read_until_closed(reader, timeout=10)
        writer.close()
        assert data == b"" and 0.95 <= closed_at - t0 <= 1.6, closed_at - t0
    finally:
        rc = await asyncio.to_thread(rx.terminate)
    assert rc == 0, rx.log_tail()


def test_ops_port_equal_to_the_webhook_port_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    port = str(free_port())
    out = subprocess.run(
        [sys.executable, "-m", "tpipe.cli", "serve", "--port", port, "--ops-port", port, "--token", TOKEN,
         "--spool-dir", str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "ops_port must differ from port" in out.stderr
    assert TOKEN not in out.stderr + out.stdout, "the settings error must not echo the other inputs"
