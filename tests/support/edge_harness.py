"""A real receiver server in the test's event loop, and raw-socket clients to misbehave against it.

``serving(tmp, **settings)`` runs ``ingest.http.server.build_server`` (the production server: edge
protocol, its limits, one socket per port) on free ports, in spool mode with an inline forwarder and
no Kafka listening (spool mode answers 202 without Kafka; nothing here needs a broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from ingest.http.protocol import EdgeLimits, EdgeProtocol
from ingest.http.server import ReceiverServer, build_server
from ingest.settings import IngestSettings
from localbroker import free_port
from tests.support.processes import ReceiverAddress, series_value

TOKEN = "edge-token-8c41d2"
BODY = orjson.dumps({"createdAt": "2025-06-01T12:00:00Z", "vin": "5YJ3E1EA0KF000001", "data": {"VehicleSpeed": 3}})


@dataclass
class Served(ReceiverAddress):
    server: ReceiverServer

    @property
    def limits(self) -> EdgeLimits:
        protocol = self.server.config.http_protocol_class
        assert isinstance(protocol, type) and issubclass(protocol, EdgeProtocol)
        return protocol.limits

    @property
    def app(self) -> Any:
        """The ReceiverApp (``loaded_app`` is it wrapped in uvicorn's middleware)."""
        return self.server.config.app

    async def metric(self, series: str) -> float:
        """The value of one series (``name{label="v"}``) from ``/metrics``; 0 when absent."""
        async with httpx.AsyncClient(timeout=10) as client:
            return series_value((await client.get(self.ops_url + "/metrics")).text, series)

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.get(self.ops_url + "/healthz")).json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def serving(tmp: Path, **overrides: Any) -> AsyncIterator[Served]:
    port = free_port()
    settings = IngestSettings(**{
        "host": "127.0.0.1", "port": port, "token": [TOKEN], "spool_dir": tmp / "spool",
        "kafka": f"127.0.0.1:{free_port()}", "forwarder": "inline", "validate_events": False,
        "tokens_watch_interval_s": 0, "drain_timeout_s": 1.0, **overrides,
    })
    server = build_server(settings)
    task = asyncio.get_running_loop().create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:  # poll until the lifespan ran and the sockets listen
        if task.done():
            task.result()
            raise AssertionError("server stopped during start")
        assert time.monotonic() < deadline, "server did not start"
        await asyncio.sleep(0.01)
    try:
        yield Served(port, server, ops_port=settings.ops_port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


# ---- raw clients ---------------------------------------------------------------------------------
async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def request_head(length: int, token: str = TOKEN, path: str = "/webhook") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: receiver\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, headers, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
    return status, headers, body


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> tuple[float, bytes]:
    """Read until the server closes or resets the connection: (monotonic time it did, bytes read)."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return time.monotonic(), data


async def trickle(writer: asyncio.StreamWriter, piece: bytes, every_s: float) -> None:
    """Send ``piece`` every ``every_s`` seconds (a slow client's pace) until the connection breaks."""
    with contextlib.suppress(ConnectionError, OSError):
        while not writer.is_closing():
            await asyncio.sleep(every_s)
            writer.write(piece)
            await writer.drain()


def close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
