"""Polling with a deadline: the one way tests wait for a condition (never a fixed sleep).

    await wait_until(lambda: len(worker.applied) == 40, "40 events applied")
    rows = await wait_until(count_rows, "rows in the ledger", in_thread=True, timeout=60)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def wait_until(
    condition: Callable[[], Any],
    what: str = "condition",
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    in_thread: bool = False,
) -> Any:
    """Call ``condition()`` every ``interval`` seconds until it returns something truthy, and return
    that; fail the test after ``timeout`` seconds, naming ``what``.

    ``condition`` may return an awaitable (an ``async def``, or a lambda returning a coroutine): it is
    awaited. ``in_thread=True`` runs a blocking one (a database query, a table scan) in a worker thread
    so that the code under test, in this event loop, keeps running meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition) if in_thread else condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
