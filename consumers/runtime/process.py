"""A worker as a process (``tpipe consume <worker>``): its metrics server, signals and exit status.

``run_worker(worker, settings)``:

1. starts the Prometheus server on ``--metrics-port`` *before* anything else (no Kafka client, no
   database): port 0 takes a free port; the port in use is printed (``metrics on
   http://0.0.0.0:PORT/metrics``) and logged (``metrics server listening``, field ``port``). A port
   another process holds is a one-line error and exit status 2, so a second copy of a worker on
   one host fails at once with the fix in the message (``--metrics-port 0``) instead of a traceback
   after it joined the group. ``--no-metrics`` serves none.
2. runs the worker until SIGTERM/SIGINT, then drains (a second signal exits at once, 130).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from consumers.errors import MetricsPortError
from consumers.runtime.runner import WorkerRuntime
from consumers.runtime.settings import WorkerSettings
from consumers.runtime.worker import Worker
from plumbing import metrics

__all__ = ["MetricsPortError", "MetricsServer", "run_worker", "start_metrics_server"]

log = logging.getLogger("consumers.runtime")




@dataclass(frozen=True)
class MetricsServer:
    addr: str
    port: int
    close: Callable[[], None]

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/metrics"


def start_metrics_server(settings: WorkerSettings) -> MetricsServer | None:
    """Serve ``plumbing.metrics.REGISTRY`` on ``settings.metrics_port`` (0: a free one); None when
    ``settings.metrics`` is off. Raises ``MetricsPortError`` when the port is taken."""
    if not settings.metrics:
        return None
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(settings.metrics_port, addr=settings.metrics_addr, registry=metrics.REGISTRY)
    except OSError as exc:
        raise MetricsPortError(
            f"cannot serve metrics on {settings.metrics_addr}:{settings.metrics_port}: {exc.strerror or exc} "
            "(another worker on this host? give each its own --metrics-port, or --metrics-port 0 for a free one)"
        ) from None

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return MetricsServer(settings.metrics_addr, int(server.server_port), close)


async def _main(worker: Worker, settings: WorkerSettings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second signal, exiting without draining", extra={"signal": sig.name})
            if main_task is not None:
                main_task.cancel()
            return
        log.info("signal received, draining", extra={"signal": sig.name})
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await WorkerRuntime(worker, settings, stop=stop).run()
        return 0
    except asyncio.CancelledError:
        return 130
    except Exception:
        log.exception("worker failed", extra={"worker": worker.name})
        return 1
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_worker(worker: Worker, settings: WorkerSettings) -> int:
    """CLI entry: the metrics server first, then the worker until SIGTERM/SIGINT. Exit status."""
    try:
        server = start_metrics_server(settings)
    except MetricsPortError as exc:
        print(f"tpipe consume {worker.name}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    if server is not None:
        print(f"tpipe consume {worker.name}: metrics on {server.url}", flush=True)
        log.info("metrics server listening", extra={"worker": worker.name, "addr": server.addr, "port": server.port})
    try:
        return asyncio.run(_main(worker, settings))
    finally:
        if server is not None:
            server.close()
