"""Every time helper of the project, in one place: event timestamps (ISO-8601 / epoch numbers) to
epoch ms and back (the parse hot path), µs for the lake, UTC days, and the times and durations
people type on the command line (``2h``, ``now``, ISO, epoch ms).

``datetime.fromisoformat`` (3.11) accepts ``Z``, offsets and any number of fractional digits
(it keeps 6), which makes it the fastest correct parser available (~0.5 µs); no strptime.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

__all__ = [
    "MAX_MS",
    "MIN_MS",
    "day_of_ms",
    "epoch_to_ms",
    "format_ms",
    "iso_to_ms",
    "iso_to_us",
    "ms_to_iso",
    "now_ms",
    "parse_duration_ms",
    "parse_time_ms",
    "render_as_sent",
    "to_ms",
    "us_to_iso",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
#: Accepted range: year 1 .. year 9999 (what ISO-8601 / datetime can render).
MIN_MS = -62135596800000
MAX_MS = 253402300799999


def iso_to_ms(s: str) -> int | None:
    """Epoch ms of an ISO-8601 string (0-9+ fractional digits, ``Z`` or offset; no zone = UTC).

    Sub-millisecond digits are truncated (floor). Returns None when it cannot be parsed.
    """
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return (dt - _EPOCH) // _ONE_MS
    except OverflowError:  # pragma: no cover - offsets at the datetime range limits
        return None


def epoch_to_ms(n: float) -> int | None:
    """Epoch ms of an epoch number, guessing the unit by magnitude (s, ms, µs or ns).

    Floats are rounded to the microsecond first (so 1746171072.403 s is ...403 ms, not
    ...402.9999), then floored to the millisecond, like ISO fractions.
    """
    a = abs(n)
    if a < 1e11:  # seconds, up to year 5138
        scale = 1_000_000
    elif a < 1e14:  # milliseconds
        scale = 1_000
    elif a < 1e17:  # microseconds
        scale = 1
    elif a < 1e20:  # nanoseconds
        scale = 0
    else:
        return None
    if isinstance(n, int):
        ms = n * 1000 if scale == 1_000_000 else n if scale == 1_000 else n // (1000 if scale else 1_000_000)
    else:
        us = round(n * scale) if scale else round(n / 1000)
        ms = us // 1000
    if MIN_MS <= ms <= MAX_MS:
        return ms
    return None


def to_ms(value: Any) -> int | None:
    """Epoch ms of a sent timestamp: ISO string, epoch number, numeric string; None if not one."""
    if isinstance(value, str):
        ms = iso_to_ms(value)
        if ms is not None:
            return ms
        try:
            return epoch_to_ms(int(value))
        except ValueError:
            pass
        try:
            num = float(value)
        except ValueError:
            return None
        if num != num or num in (float("inf"), float("-inf")):
            return None
        return epoch_to_ms(num)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return epoch_to_ms(value)
    if isinstance(value, dict):  # protobuf Timestamp as {seconds, nanos}
        sec = value.get("seconds")
        nanos = value.get("nanos", 0)
        if isinstance(sec, str):
            try:
                sec = int(sec)
            except ValueError:
                return None
        if isinstance(sec, int) and not isinstance(sec, bool) and isinstance(nanos, int):
            ms = sec * 1000 + nanos // 1_000_000
            return ms if MIN_MS <= ms <= MAX_MS else None
    return None


def render_as_sent(value: Any) -> str:
    """The sent timestamp value as a string (ISO strings unchanged; numbers as their JSON text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value).decode()


_SECONDS: dict[int, str] = {}  # epoch second -> "YYYY-MM-DDTHH:MM:SS" (bounded, see below)
_SECONDS_MAX = 4096
_FRACS = tuple(f".{i:03d}Z" for i in range(1000))  # millisecond suffixes, ".000Z" .. ".999Z"
# The last (ms, result), as one tuple so that concurrent callers always read a matching pair.
_last: tuple[int, str] = (0, "1970-01-01T00:00:00.000Z")


def ms_to_iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (``2024-10-04T10:45:17.537Z``).

    Requests arriving in the same millisecond share a receive time, so the last result is kept.
    Otherwise the second part is cached per epoch second (receive times and Splunk times
    cluster), so this is one dict lookup and a concatenation on a hit; the cache is dropped when
    it gets large.
    """
    global _last
    last = _last
    if last[0] == ms and type(ms) is int:
        return last[1]
    sec, frac = divmod(ms, 1000)
    s = _SECONDS.get(sec)
    if s is None:
        try:
            s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        except (OverflowError, OSError, ValueError):
            s = (_EPOCH + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
        if len(s) < 19:  # strftime does not zero-pad years < 1000 on every platform
            s = s.zfill(19)
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        _SECONDS[sec] = s
    if type(frac) is not int:  # outside the signature (a float ms): formatted, and failing, as before
        return f"{s}.{frac:03d}Z"
    iso = s + _FRACS[frac]
    _last = (ms, iso)
    return iso


def now_ms() -> int:
    """The current time, epoch ms."""
    return time.time_ns() // 1_000_000


def format_ms(ms: int | None, missing: str = "-") -> str:
    """``ms_to_iso`` for display: ``missing`` for None."""
    return missing if ms is None else ms_to_iso(ms)


def day_of_ms(ms: int) -> str:
    """The UTC calendar day ``YYYY-MM-DD`` of an epoch-ms instant."""
    return ms_to_iso(ms)[:10]


_US = timedelta(microseconds=1)


def iso_to_us(s: str, fallback_ms: int) -> int:
    """Epoch µs of an ISO-8601 timestamp (sub-µs digits dropped); ``fallback_ms`` when unparseable or
    when it disagrees with ``fallback_ms`` (the envelope's ``created_at_ms`` is authoritative to the ms)."""
    try:
        dt = datetime.fromisoformat(s)
    except (ValueError, TypeError):
        return fallback_ms * 1000
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return us if us // 1000 == fallback_ms else fallback_ms * 1000


def us_to_iso(us: int) -> str:
    """Epoch µs -> ``2025-05-02T07:31:12.402Z`` (6 fraction digits when sub-millisecond digits exist)."""
    text = (_EPOCH + us * _US).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[:-3] if us % 1000 == 0 else text) + "Z"


# ---- times and durations typed by people -------------------------------------------------------
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


def parse_time_ms(text: str, *, now: int | None = None) -> int:
    """An absolute or relative time -> epoch ms (UTC): ISO-8601 (``2025-05-02T07:31:12Z``, a date, an
    offset; no zone = UTC), epoch ms, ``now``, or a time before now (``30m``, ``2h``, ``7d``, ``1w``,
    ``90s``, ``2h30m``; a leading ``-`` is allowed)."""
    s = text.strip()
    current = now_ms() if now is None else now
    if s.lower() == "now":
        return current
    rel = s[1:] if s.startswith("-") else s
    if _DURATION.fullmatch(rel.lower()):
        return current - parse_duration_ms(rel)
    if s.isdigit() and len(s) >= 10:  # epoch milliseconds (10+ digits: not a year or a date)
        return int(s) if len(s) >= 12 else int(s) * 1000
    ms = iso_to_ms(s)
    if ms is None:
        raise ValueError(
            f"not a time: {text!r} (use ISO-8601 like 2025-05-02T07:31:12Z, 'now', or a relative time like 2h, 7d)"
        )
    return ms
