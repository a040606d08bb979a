"""Progress bars for the long commands (replay, lake replay, DLQ redrive), through ``rich``.

``ProgressBar(total, label=...)`` counts work done against ``total`` (records read, or events) and
events sent, and shows a bar with the percentage, counts, rate, elapsed time and ETA on stderr. It
is on only when stderr is a terminal (``enabled=True`` forces it, ``False`` silences it), so logs
and pipes stay clean. Counting is cheap: the numbers are pushed to the bar at most ten times a
second, never per record.

``on_update(done, total, sent)``, when given, receives the same numbers at the same pace (and once
more at ``close``), bar or no bar: the operator console draws its own bar from it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressBar", "ProgressListener"]

#: ``(done, total, sent)``: what a progress bar would show (``total`` 0: not known)
ProgressListener = Callable[[int, int, int], None]

_PUSH_EVERY_S = 0.1


class ProgressBar:
    """Counts ``done`` (against ``total``, in ``unit``) and ``sent``; renders with rich when enabled.

    ``total`` may grow while running (``add_total``); a range that stops early adds what it will not
    read through ``skip`` so the bar and its ETA stay honest."""

    def __init__(self, total: int, *, label: str = "replay", stream: TextIO | None = None,
                 enabled: bool | None = None, unit: str = "rec", on_update: ProgressListener | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self.total = max(total, 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self.sent = 0
        self._last = 0.0
        self._on_update = on_update
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            console = Console(file=self.stream, force_terminal=True, markup=False, highlight=False)
            self._bar = Progress(
                TextColumn(label), BarColumn(), TaskProgressColumn(), MofNCompleteColumn(),
                TextColumn(unit), TextColumn("| {task.fields[sent]:,} events"), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=console, refresh_per_second=5,
            )
            self._task = self._bar.add_task(label, total=self.total or None, sent=0)
            self._bar.start()

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

    def add_total(self, n: int) -> None:
        self.total += max(n, 0)
        self.tick(force=True)

    def tick(self, *, force: bool = False) -> None:
        if self._on_update is None and (self._bar is None or self._task is None):
            return
        now = time.monotonic()
        if not force and now - self._last < _PUSH_EVERY_S:
            return
        self._last = now
        done = min(self.done, self.total) if self.total else self.done
        if self._on_update is not None:
            self._on_update(done, self.total, self.sent)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=self.total or None, sent=self.sent, refresh=force)

    def close(self) -> None:
        self.tick(force=True)
        self._on_update = None
        if self._bar is None:
            return
        self._bar.stop()
        self._bar = None
