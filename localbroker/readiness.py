"""When a started node serves: its port opens (only once it is unfenced), then a real metadata
request lists a broker."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from localbroker.errors import BrokerError
from plumbing.kafka_clients import make_admin
from plumbing.settings import KafkaSettings

__all__ = ["probe_metadata", "run_coro"]

T = TypeVar("T")


def run_coro(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())  # type: ignore[arg-type]
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="tpipe-broker-probe", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def probe_metadata(
    settings: KafkaSettings,
    deadline: float,
    check_alive: Callable[[], None],
    where: Callable[[], str],
    *,
    brokers: int = 1,
) -> None:
    """Until a metadata request lists ``brokers`` brokers; ``check_alive`` raises if a process died,
    ``where`` describes the node(s) for the error (address, log tail)."""
    last: BaseException | None = None
    while True:
        check_alive()
        admin = make_admin(settings, request_timeout_ms=5000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            await admin.list_topics()
            if len(cluster.get("brokers") or ()) >= brokers:
                return
            last = BrokerError(f"metadata lists {len(cluster.get('brokers') or ())} of {brokers} brokers: {cluster}")
        except Exception as e:  # not ready yet: retry until the deadline
            last = e
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        if time.monotonic() > deadline:
            raise BrokerError(f"kafka broker accepts connections but does not answer metadata requests "
                              f"({last!r}); {where()}")
        await asyncio.sleep(0.2)  # retry back-off between probes, not a readiness wait
