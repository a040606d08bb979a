"""Slow, idle and greedy clients against the real receiver server (edge protocol on real sockets).

Each test runs ``ingest.http.server.build_server`` on free ports with small limits and talks raw HTTP/1.1
over TCP. Sleeps here are a slow client's pace, never a wait for readiness (that is polled).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson

from localbroker import free_port
from tests.support.edge_harness import (
    BODY,
    TOKEN,
    close,
    connect,
    read_response,
    read_until_closed,
    request_head,
    serving,
    trickle,
)
from tests.support.waiting import wait_until

# How late a timeout may cut a connection: the timer fires on the event loop that also runs this test,
# on a machine shared with other test runs.
MARGIN_S = 0.6


def limited(limit: str) -> str:
    return f'tpipe_http_limited_total{{limit="{limit}"}}'


def requests(status: int) -> str:
    return f'tpipe_http_requests_total{{status="{status}"}}'


async def test_headers_not_complete_in_time_close_the_connection(tmp_path: Path) -> None:
    async with serving(tmp_path, header_timeout_s=1.0, keep_alive_timeout_s=5) as srv:
        before = await srv.metric(limited("header_timeout_s"))

        # a connection that never sends anything
        t0 = time.monotonic()
        reader, writer = await connect(srv.port)
        closed_at, data = await read_until_closed(reader, timeout=10)
        assert data == b"" and 0.95 <= closed_at - t0 <= 1.0 + MARGIN_S, closed_at - t0
        close(writer)

        # a slowloris: every header line comes well within the timeout, the headers as a whole do not
        t0 = time.monotonic()
        reader, writer = await connect(srv.port)
        writer.write(b"POST /webhook HTTP/1.1\r\n")
        slow = asyncio.ensure_future(trickle(writer, b"X-Slow: 1\r\n", 0.2))
        closed_at, data = await read_until_closed(reader, timeout=10)
        slow.cancel()
        assert data == b"" and 0.95 <= closed_at - t0 <= 1.0 + MARGIN_S, closed_at - t0
        close(writer)

        # keep-alive: a next request gets its own header time, counted from its first byte
        reader, writer = await connect(srv.port)
        writer.write(request_head(len(BODY)) + BODY)
        status, _, _ = await read_response(reader)
        assert status == 202
        await asyncio.sleep(1.3)  # the connection, idle (keep-alive 5 s), outlives one header timeout
        t0 = time.monotonic()
        writer.write(b"POST /webhook HTTP/1.1\r\n")
        slow = asyncio.ensure_future(trickle(writer, b"X-Slow: 1\r\n", 0.2))
        closed_at, data = await read_until_closed(reader, timeout=10)
        slow.cancel()
        assert data == b"" and 0.95 <= closed_at - t0 <= 1.0 + MARGIN_S, closed_at - t0
        close(writer)

        assert await srv.metric(limited("header_timeout_s")) - before == 3


async def test_body_not_complete_in_time_is_cut_and_counted(tmp_path: Path) -> None:
    async with serving(tmp_path, body_timeout_s=1.0, header_timeout_s=5.0) as srv:
        before = {s: await srv.metric(s) for s in (requests(400), requests(202), limited("body_timeout_s"))}

        # a body in pieces that is complete within the timeout is taken
        reader, writer = await connect(srv.port)
        writer.write(request_head(len(BODY)))
        for i in range(0, len(BODY), len(BODY) // 3 + 1):
            await asyncio.sleep(0.2)  # slow, but not too slow
            writer.write(BODY[i:i + len(BODY) // 3 + 1])
        status, _, body = await read_response(reader)
        assert status == 202, body
        close(writer)

        # a body trickled past the timeout: the connection is cut (no answer can reach such a client)
        reader, writer = await connect(srv.port)
        writer.write(request_head(200) + b"{")
        await writer.drain()
        t0 = time.monotonic()
        slow = asyncio.ensure_future(trickle(writer, b" ", 0.2))
        closed_at, data = await read_until_closed(reader, timeout=10)
        slow.cancel()
        assert data == b"" and 0.95 <= closed_at - t0 <= 1.0 + MARGIN_S, closed_at - t0
        close(writer)

        # the app saw the disconnect and counted the request; the limit says why
        async def counted() -> bool:
            return await srv.metric(requests(400)) - before[requests(400)] == 1

        await wait_until(counted, "the cut request counted as 400")
        assert await srv.metric(limited("body_timeout_s")) - before[limited("body_timeout_s")] == 1
        assert await srv.metric(requests(202)) - before[requests(202)] == 1
        assert (await srv.health())["spool"]["pending_events"] == 1, "only the complete body was stored"


async def test_idle_connections_do_not_keep_webhooks_out(tmp_path: Path) -> None:
    """50 idle or half-open sockets and a limit of 4 requests in flight: real webhooks still get 202
    promptly, because only requests in the request path count against the limit."""
    async with serving(tmp_path, max_concurrent_requests=4, header_timeout_s=60.0) as srv:
        idle = [await connect(srv.port) for _ in range(50)]
        for _, writer in idle[::2]:  # half of them began a request and stopped
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: rec")
            await writer.drain()
        await wait_until(lambda: srv.limits.webhook_connections >= 50, "50 connections open on the server")

        latencies: list[float] = []
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=srv.url, timeout=10,
                                     limits=httpx.Limits(max_connections=4)) as client:
            async def post() -> None:
                t = time.monotonic()
                r = await client.post("/webhook", content=BODY, headers={"Authorization": f"Bearer {TOKEN}"})
                latencies.append(time.monotonic() - t)
                statuses.append(r.status_code)

            for _ in range(5):
                await asyncio.gather(*(post() for _ in range(4)))
        assert statuses == [202] * 20
        assert max(latencies) < 1.0, latencies

        assert srv.limits.webhook_connections >= 50, "the idle sockets stayed open throughout"
        for reader, writer in idle:
            assert not reader.at_eof()
            close(writer)


async def test_requests_over_the_in_flight_limit_get_503_with_retry_after(tmp_path: Path) -> None:
    async with serving(tmp_path, max_concurrent_requests=2, retry_after_s=7) as srv:
        before = {s: await srv.metric(s) for s in (requests(503), requests(202), limited("max_concurrent_requests"))}
        held = []
        for _ in range(2):  # two requests in the request path, waiting for the rest of their body
            reader, writer = await connect(srv.port)
            writer.write(request_head(len(BODY)) + BODY[:10])
            held.append((reader, writer))
        await wait_until(lambda: srv.app.gate.inflight == 2, "two requests in flight")

        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
            r = await client.post("/webhook", content=BODY, headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 503
            assert r.headers["retry-after"] == "7"
            assert r.json() == {"error": "overloaded", "reason": "more than 2 webhook requests in flight; retry later"}
            assert (await client.get("/healthz")).status_code == 200, "the limit is for webhooks only"

            for reader, writer in held:
                writer.write(BODY[10:])
                status, _, _ = await read_response(reader)
                assert status == 202
                close(writer)
            await wait_until(lambda: srv.app.gate.inflight == 0, "the held requests answered")
            r = await client.post("/webhook", content=BODY, headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 202

        assert await srv.metric(requests(503)) - before[requests(503)] == 1
        assert await srv.metric(limited("max_concurrent_requests")) - before[limited("max_concurrent_requests")] == 1
        assert await srv.metric(requests(202)) - before[requests(202)] == 3


async def test_connections_over_the_cap_get_503_and_are_closed_but_the_ops_port_is_not_capped(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, max_connections=3, header_timeout_s=60.0, ops_port=free_port()) as srv:
        before = await srv.metric(limited("max_connections"))
        idle = [await connect(srv.port) for _ in range(3)]
        await wait_until(lambda: srv.limits.webhook_connections == 3, "three connections open")

        reader, writer = await connect(srv.port)
        status, headers, body = await read_response(reader)
        assert status == 503 and headers["retry-after"] == "5" and headers["connection"] == "close"
        assert orjson.loads(body)["error"] == "overloaded"
        _, rest = await read_until_closed(reader, timeout=5)
        assert rest == b""
        close(writer)

        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(srv.ops_url + "/readyz")).status_code == 200, "probes get through"
            close(idle.pop()[1])
            await wait_until(lambda: srv.limits.webhook_connections == 2, "a connection freed")
            r = await client.post(srv.url + "/webhook", content=BODY, headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 202
        assert await srv.metric(limited("max_connections")) - before == 1
        for _, w in idle:
            close(w)


async def test_oversized_headers_get_431_and_normal_ones_pass(tmp_path: Path) -> None:
    async with serving(tmp_path, max_header_bytes=2048) as srv:
        before = await srv.metric(limited("max_header_bytes"))
        reader, writer = await connect(srv.port)
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: receiver\r\nX-Pad: " + b"a" * 4096)
        status, _, body = await read_response(reader)
        assert status == 431 and b"2048" in body
        _, rest = await read_until_closed(reader, timeout=5)
        assert rest == b""
        close(writer)

        reader, writer = await connect(srv.port)
        padding = b"X-Pad: " + b"a" * 1500 + b"\r\n"
        head = request_head(len(BODY))
        writer.write(head[:-2] + padding + b"\r\n" + BODY)
        status, _, body = await read_response(reader)
        assert status == 202, body
        close(writer)
        assert await srv.metric(limited("max_header_bytes")) - before == 1


async def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path, keep_alive_timeout_s=1, header_timeout_s=10.0) as srv:
        reader, writer = await connect(srv.port)
        writer.write(request_head(len(BODY)) + BODY)
        status, _, _ = await read_response(reader)
        t0 = time.monotonic()
        assert status == 202
        closed_at, data = await read_until_closed(reader, timeout=10)
        assert data == b"" and 0.95 <= closed_at - t0 <= 1.0 + MARGIN_S, closed_at - t0
        close(writer)


async def test_upgrade_requests_are_plain_http_and_free_their_connection_slot(tmp_path: Path) -> None:
    """A WebSocket upgrade must not switch protocols (that would take the connection out of the count
    without ever giving its slot back): with a cap of one connection, upgrades come and go."""
    async with serving(tmp_path, max_connections=1) as srv:
        for _ in range(3):
            reader, writer = await connect(srv.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status == 200 and b'"status":"ok"' in body
            close(writer)
            await wait_until(lambda: srv.limits.webhook_connections == 0, "the connection slot given back")
        reader, writer = await connect(srv.port)
        writer.write(request_head(len(BODY)) + BODY)
        status, _, _ = await read_response(reader)
        assert status == 202
        close(writer)
