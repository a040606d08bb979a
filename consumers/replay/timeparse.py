"""Times and durations on the command line: ISO-8601 (``2025-05-02T07:31:12Z``, a date, an
offset; no zone = UTC), epoch milliseconds, ``now``, or a relative time before now (``30m``,
``2h``, ``7d``, ``1w``, ``90s``, also ``2h30m``)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

__all__ = ["format_ms", "parse_duration_ms", "parse_time_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration_ms(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``7d``, ``1w``, ``2h30m``, ``1.5h`` or plain ``0`` -> milliseconds."""
    s = text.strip().lower()
    if s == "0":
        return 0
    if not _DURATION.fullmatch(s):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 2h, 7d, 1w)")
    return int(sum(float(n) * _UNIT_MS[u] for n, u in _PART.findall(s)))


def parse_time_ms(text: str, *, now_ms: int | None = None) -> int:
    """An absolute or relative time -> epoch milliseconds (UTC).

    Relative times count back from now: ``2h`` is two hours ago (a leading ``-`` is allowed).
    """
    s = text.strip()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if s.lower() == "now":
        return now
    rel = s[1:] if s.startswith("-") else s
    if _DURATION.fullmatch(rel.lower()):
        return now - parse_duration_ms(rel)
    if s.isdigit() and len(s) >= 10:  # epoch milliseconds (10+ digits: not a year or a date)
        return int(s) if len(s) >= 12 else int(s) * 1000
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO-8601 like 2025-05-02T07:31:12Z, 'now', or a relative time like 2h, 7d)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def format_ms(ms: int | None) -> str:
    """Epoch ms -> ``2025-05-02T07:31:12.402Z`` (``-`` for None)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
