"""``POST /webhook`` answered in the HTTP protocol (``ingest.http.fast``) gives exactly the answers of
the ASGI path (``--no-fast-webhook``): same status lines, headers (but the date) and bodies, for good
and refused requests, kept-alive and closed connections, pipelined requests in order, HTTP/1.0 —
on the production server (``build_server``), raw sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tests.support.edge_harness import BODY, TOKEN, close, connect, read_until_closed, serving


def _post(body: bytes, *, token: str | None = TOKEN, extra: str = "", version: str = "1.1",
          path: str = "/webhook", length: int | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    size = len(body) if length is None else length
    return (f"POST {path} HTTP/{version}\r\nHost: receiver\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {size}\r\n{extra}\r\n").encode() + body


DEEP = b'{"vin":"V","data":' + b"[" * 80 + b"]" * 80 + b"}"
# (name, raw request bytes sent on one connection, answers expected)
CASES = [
    ("accepted", _post(BODY), 1),
    ("no token", _post(BODY, token=None), 1),
    ("wrong token", _post(BODY, token="nope"), 1),
    ("token in the query", _post(BODY, token=None, path=f"/webhook?token={TOKEN}&x=1"), 1),
    ("declared too large", _post(b"{}", length=2048), 1),
    ("not json", _post(b"{nope"), 1),
    ("too deep", _post(DEEP), 1),
    ("an array", _post(b"[" + BODY + b"," + BODY + b"]"), 1),
    ("connection close", _post(BODY, extra="Connection: close\r\n"), 1),
    ("http/1.0", _post(BODY, version="1.0"), 1),
    ("pipelined webhooks", _post(BODY) + _post(b"[1]") + _post(BODY, token="nope") + _post(BODY), 4),
    ("pipelined webhook then health", _post(BODY) + b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n" + _post(BODY), 3),
    ("chunked body", b"POST /webhook HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer " + TOKEN.encode()
     + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n", 1),
]


async def _exchange(port: int, raw: bytes, answers: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    reader, writer = await connect(port)
    try:
        writer.write(raw)
        out = []
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.split(b"\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:] if ln)}
            body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), 10)
            headers.pop(b"date", None)
            if b"pending_events" in body:  # /healthz: its figures differ between two servers, its shape not
                body = orjson.dumps(sorted(orjson.loads(body)))
                headers.pop(b"content-length")
            out.append((lines[0], headers, body))
        return out
    finally:
        close(writer)


async def _answers(tmp: Path, fast: bool) -> dict[str, list[tuple[bytes, dict[bytes, bytes], bytes]]]:
    async with serving(tmp, fast_webhook=fast, max_body_bytes=1024) as rx:
        assert (rx.limits.fast is not None) is fast
        return {name: await _exchange(rx.port, raw, n) for name, raw, n in CASES}


async def test_the_fast_path_answers_exactly_as_the_asgi_path(tmp_path: Path) -> None:
    fast = await _answers(tmp_path / "fast", True)
    asgi = await _answers(tmp_path / "asgi", False)
    for name, _, _ in CASES:
        assert fast[name] == asgi[name], name
    statuses = {name: [a[0].split()[1] for a in fast[name]] for name, _, _ in CASES}
    assert statuses["accepted"] == [b"202"] and statuses["no token"] == [b"401"]
    assert statuses["declared too large"] == [b"413"] and statuses["too deep"] == [b"400"]
    assert statuses["pipelined webhooks"] == [b"202", b"400", b"401", b"202"], "answers in request order"
    assert statuses["pipelined webhook then health"] == [b"202", b"200", b"202"]
    assert fast["connection close"][0][1][b"connection"] == b"close"


async def test_a_fast_request_is_stored_before_its_202_and_the_connection_is_kept(tmp_path: Path) -> None:
    async with serving(tmp_path) as rx:
        spool = rx.app.receiver.spool
        reader, writer = await connect(rx.port)
        try:
            for i in range(3):
                body = orjson.dumps({"createdAt": "2025-06-01T12:00:00Z", "vin": "V", "data": {"I": i}})
                writer.write(_post(body))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert head.startswith(b"HTTP/1.1 202 ")
                await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
                records, _ = spool.read(spool.cursor, max_records=10)
                assert orjson.loads(records[-1].body)["data"] == {"I": i}, "on disk when the 202 was sent"
        finally:
            close(writer)


@pytest.mark.parametrize("fast", [True, False])
async def test_a_body_over_the_limit_is_refused_whatever_its_declared_length(tmp_path: Path, fast: bool) -> None:
    """A chunked body (no Content-Length) that grows past --max-body-bytes gets 413, on both paths."""
    async with serving(tmp_path, fast_webhook=fast, max_body_bytes=1024) as rx:
        reader, writer = await connect(rx.port)
        try:
            chunk = b"x" * 600
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer " + TOKEN.encode()
                         + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3
                         + b"0\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 413 ")
        finally:
            close(writer)


async def test_a_client_gone_mid_body_counts_as_400_and_frees_its_slot(tmp_path: Path) -> None:
    async with serving(tmp_path, max_concurrent_requests=1) as rx:
        before = await rx.metric('tpipe_http_requests_total{status="400"}')
        reader, writer = await connect(rx.port)
        writer.write(_post(BODY)[:-5])  # headers and most of the body
        await writer.drain()
        close(writer)
        await read_until_closed(reader, 5)
        for _ in range(500):  # until the server saw the connection go (no readiness signal: poll the metric)
            if await rx.metric('tpipe_http_requests_total{status="400"}') == before + 1:
                break
            await asyncio.sleep(0.01)
        assert await rx.metric('tpipe_http_requests_total{status="400"}') == before + 1
        assert (await _exchange(rx.port, _post(BODY), 1))[0][0].split()[1] == b"202", "the in-flight slot was freed"
