"""The one back-off helper every retry loop uses.

``Backoff`` yields the delays (``first``, doubling, capped at ``cap``; ``reset()`` after a success).
``pause`` waits one delay but wakes at once when any of the given events is set (a stop, a
revocation), so no retry loop keeps a process from shutting down. ``retry_call`` is the whole loop
for the common case: call again while the error is one worth retrying, until a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Backoff", "pause", "retry_call"]

T = TypeVar("T")


class Backoff:
    """Exponential back-off delays: ``first``, ``2 * first`` ... at most ``cap`` seconds."""

    def __init__(self, first: float, cap: float = 30.0, factor: float = 2.0) -> None:
        self.first, self.cap, self.factor = first, cap, factor
        self._next = first

    def next(self) -> float:
        """The delay to wait now (the following one grows)."""
        delay = self._next
        self._next = min(self._next * self.factor, self.cap)
        return delay

    def peek(self) -> float:
        return self._next

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self._next = self.first


async def pause(seconds: float, *wake: asyncio.Event) -> bool:
    """Sleep ``seconds``, or less if one of ``wake`` is set meanwhile; True if woken by one."""
    if any(e.is_set() for e in wake):
        return True
    if not wake:
        await asyncio.sleep(seconds)
        return False
    waiters = [asyncio.ensure_future(e.wait()) for e in wake]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return bool(done)


async def retry_call(
    call: Callable[[], Awaitable[T]],
    *,
    retry_if: Callable[[BaseException], bool],
    backoff: Backoff,
    timeout_s: float,
) -> T:
    """``call()`` again while it raises an error ``retry_if`` accepts, for at most ``timeout_s``
    (then, or on any other error, the error is raised)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call()
        except Exception as exc:
            delay = backoff.next()
            if not retry_if(exc) or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
