"""A one-line progress bar on stderr (only when stderr is a terminal) and an events/s limiter."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

__all__ = ["Progress", "RateLimiter"]

_BAR = 24


def _fmt_duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts records scanned (against ``total``) and events sent; renders at most 5 times a second.

    ``total`` is the number of records in the ranges to read; a partition that stops early (past
    the window) adds what it skipped through ``skip`` so the bar and the ETA stay honest.
    """

    def __init__(self, total: int, *, label: str = "replay", stream: TextIO | None = None,
                 enabled: bool | None = None, unit: str = "rec") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = max(total, 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self.sent = 0
        self._t0 = time.monotonic()
        self._last = 0.0
        self._width = 0

    def scanned(self, n: int = 1) -> None:
        self.done += n
        self.tick()

    def skip(self, n: int) -> None:
        if n > 0:
            self.done += n
            self.tick()

    def add_sent(self, n: int = 1) -> None:
        self.sent += n
        self.tick()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        done = min(self.done, self.total) if self.total else self.done
        frac = done / self.total if self.total else 1.0
        fill = int(frac * _BAR)
        bar = "#" * fill + "-" * (_BAR - fill)
        rec_rate = done / elapsed
        ev_rate = self.sent / elapsed
        if done >= self.total:
            eta = "0:00"
        elif rec_rate > 0:
            eta = _fmt_duration((self.total - done) / rec_rate)
        else:
            eta = "?"
        return (
            f"{self.label} [{bar}] {frac * 100:5.1f}% {done:,}/{self.total:,} {self.unit} | "
            f"{self.sent:,} events {ev_rate:,.0f}/s | {_fmt_duration(elapsed)} elapsed, ETA {eta}"
        )

    def tick(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        text = self.line()
        pad = max(self._width - len(text), 0)
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.tick(force=True)
            self.stream.write("\n")
            self.stream.flush()


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
