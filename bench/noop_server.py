"""The baseline: a bare Starlette POST endpoint (``await request.body()``, constant 202) served with the
receiver's uvicorn settings (uvloop, httptools, no access log, one worker; see ``ingest.cli.build_server``).

    python -m bench.noop_server --port 8081
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_BODY = b'{"accepted":1}'


async def noop(request: Request) -> Response:
    await request.body()
    return Response(_BODY, status_code=202, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/webhook", noop, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])])


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    config = uvicorn.Config(
        app, host=a.host, port=a.port, loop="uvloop", http="httptools", access_log=False,
        log_config=None, server_header=False, lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
