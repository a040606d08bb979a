"""A worker as an operating-system process (``tpipe consume ...``): its metrics server, its
signals (SIGTERM/SIGINT drain; a second one exits at once) and its exit status."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from consumers.runtime.runner import WorkerRuntime
from consumers.runtime.settings import WorkerSettings
from consumers.runtime.worker import Worker
from plumbing import metrics

__all__ = ["run_worker", "start_metrics_server"]

log = logging.getLogger("consumers.runtime")


def start_metrics_server(settings: WorkerSettings) -> Callable[[], None] | None:
    """Serve ``plumbing.metrics.REGISTRY`` on ``settings.metrics_port`` (0: none). Returns a closer."""
    if not settings.metrics_port:
        return None
    from prometheus_client import start_http_server

    server, thread = start_http_server(settings.metrics_port, addr=settings.metrics_addr, registry=metrics.REGISTRY)

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return close


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
    close_metrics = start_metrics_server(settings)
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
        if close_metrics is not None:
            close_metrics()


def run_worker(worker: Worker, settings: WorkerSettings) -> int:
    """CLI entry: run until SIGTERM/SIGINT (drain; a second signal exits at once). Exit status."""
    return asyncio.run(_main(worker, settings))
