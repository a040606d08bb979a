"""aiokafka's benign start-up noise, moved below warning; real failures stay errors.

A consumer group's first start on a new broker (or right after a broker restart) asks for a group
coordinator before the broker has elected one: aiokafka logs ``Group Coordinator Request failed:
[Error 15] CoordinatorNotAvailableError`` at ERROR and retries, and a second later it works. That
line on every first start teaches operators to ignore errors.

``BenignNoiseFilter`` (on the one log handler, so it sees records of every aiokafka logger) turns
such a record into INFO while the condition is young: a *streak* of these messages that started less
than ``grace_s`` (30 s) ago. A coordinator that stays unavailable longer is a real failure and is
logged at ERROR as aiokafka meant it; a streak ends after ``grace_s`` without such a message.
Non-retriable coordinator errors are never touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["BENIGN_MESSAGES", "BenignNoiseFilter"]

#: aiokafka message templates that are retried by aiokafka itself, with the error class names that
#: make them benign while young
BENIGN_MESSAGES: dict[str, frozenset[str]] = {
    "Group Coordinator Request failed: %s": frozenset({
        "GroupCoordinatorNotAvailableError", "CoordinatorNotAvailableError",
        "CoordinatorLoadInProgressError", "GroupLoadInProgressError",
        "NotCoordinatorForGroupError", "NotCoordinatorError",
    }),
}


class BenignNoiseFilter(logging.Filter):
    """Demote young streaks of aiokafka's retried coordinator errors to INFO (see the module doc)."""

    def __init__(self, grace_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.grace_s = grace_s
        self._clock = clock
        self._streak_start: float | None = None
        self._last: float | None = None

    def _benign(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
            return False
        names = BENIGN_MESSAGES.get(str(record.msg))
        if names is None or not record.args:
            return False
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        err = args[0]
        return type(err).__name__ in names or any(n in str(err) for n in names)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._benign(record):
            return True
        now = self._clock()
        if self._last is None or now - self._last > self.grace_s:
            self._streak_start = now  # a new streak
        self._last = now
        assert self._streak_start is not None
        if now - self._streak_start > self.grace_s:
            return True  # it has lasted: a real failure, logged as aiokafka meant it
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger().isEnabledFor(logging.INFO)
