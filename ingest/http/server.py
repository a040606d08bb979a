"""Build the receiver's uvicorn server: the edge protocol with its limits, one socket per port.

One uvicorn server (one event loop, one lifespan, so one spool and one forwarder) listens on the
webhook port and, with ``--ops-port``, on the ops port too; ``ingest.http.limits.PortSplit`` tells the two
apart by the port a request came in on. The sockets are bound when the server starts serving.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from ingest.errors import ListenError
from ingest.http.fast import FastWebhook
from ingest.http.protocol import EdgeLimits, edge_protocol
from ingest.settings import IngestSettings

log = logging.getLogger("tpipe.ingest")



def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening, not inherited by child processes)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class ReceiverServer(uvicorn.Server):
    """``uvicorn.Server`` that binds the webhook port and the optional ops port itself."""

    def __init__(self, config: uvicorn.Config, listen: dict[str, tuple[str, int]]) -> None:
        super().__init__(config)
        self.listen = listen  # role ("webhook", "ops") -> (host, port)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:
            sockets = []
            for role, (host, port) in self.listen.items():
                try:
                    sockets.append(bind_socket(host, port))
                except OSError as exc:
                    for sock in sockets:
                        sock.close()
                    raise ListenError(f"cannot listen on {host}:{port} ({role} port): {exc}") from exc
        await super().serve(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:  # uvicorn logs no address when it is given sockets
            log.info("listening", extra={role: f"{host}:{port}" for role, (host, port) in self.listen.items()})


def build_server(settings: IngestSettings) -> ReceiverServer:
    from ingest.app import ReceiverApp, create_app

    app = create_app(settings)
    limits = EdgeLimits.from_settings(settings)
    if settings.fast_webhook and settings.durability == "spool" and isinstance(app, ReceiverApp):
        limits.fast = FastWebhook(app.receiver, app.gate, settings.ops_port)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=edge_protocol(limits),
        ws="none",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        lifespan="on",
        # uvicorn would wrap the app in ProxyHeadersMiddleware (X-Forwarded-For from 127.0.0.1): one more
        # coroutine per request for a client address the receiver never reads
        proxy_headers=False,
    )
    listen = {"webhook": (settings.host, settings.port)}
    if settings.ops_port is not None:
        listen["ops"] = (settings.ops_host or settings.host, settings.ops_port)
    return ReceiverServer(config, listen)
