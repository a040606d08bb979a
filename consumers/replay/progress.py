"""The replay's progress bar (``plumbing.progress.ProgressBar``) and its events/s limiter."""

from __future__ import annotations

import asyncio
import time

from plumbing.progress import ProgressBar

__all__ = ["Progress", "RateLimiter"]

#: the progress bar the replay commands use
Progress = ProgressBar


class RateLimiter:
    """At most ``rate`` events per second, evenly spaced (``None`` or 0: unlimited)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
            now = self._next
        self._next = max(self._next, now) + self.interval
