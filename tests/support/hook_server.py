"""A real HTTP endpoint that records what it is sent, and the Standard Webhooks signature check.

    with HookServer(fail_first=2) as hook:            # 500 to the first two requests, then 200
        ... deliver to hook.url ...
        for r in hook.accepted():
            assert_signed(r)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consumers.notify.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, secret_key, verify
from localbroker import free_port

SECRET = "whsec_" + base64.b64encode(b"tpipe-test-signing-key-0123456789").decode()
NEXT_SECRET = "whsec_" + base64.b64encode(b"tpipe-test-signing-key-rotated-to").decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    query: str = ""


@dataclass
class HookServer:
    """uvicorn + Starlette on 127.0.0.1:<free port>, ``POST /hook``: answers 500 to the first
    ``fail_first`` requests (then ``status`` to all) and records every request. Constructed, the port
    is chosen and nothing listens yet; ``start()`` (or ``with``) serves it from a thread."""

    fail_first: int = 0
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            with self._lock:
                n = len(self.requests)
                status = 500 if n < self.fail_first else self.status
                self.requests.append(Received(dict(request.headers), body, status, request.url.query))
            return JSONResponse({"n": n}, status_code=status)

        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> HookServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test HTTP server did not start")
            time.sleep(0.02)  # readiness poll interval
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> HookServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.requests)


def assert_signed(r: Received, secret: str = SECRET) -> None:
    """``r`` carries a Standard Webhooks signature by ``secret``: checked with our verifier, with the
    official package, and by recomputing the HMAC by hand."""
    assert r.headers["content-type"] == "application/json"
    msg_id, ts = r.headers[ID_HEADER], r.headers[TIMESTAMP_HEADER]
    assert re.fullmatch(r"[0-9a-f]{32}", msg_id) and ts.isdigit()
    mac = hmac.new(secret_key(secret), f"{msg_id}.{ts}.".encode() + r.body, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(mac).decode() in r.headers[SIGNATURE_HEADER].split(" ")
    assert verify(secret, r.headers, r.body)
    assert Webhook(secret).verify(r.body, r.headers) == orjson.loads(r.body)  # raises when it does not verify
