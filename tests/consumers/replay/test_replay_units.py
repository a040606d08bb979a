"""Pure parts of the replay tooling: times, selection, progress line, rate limit."""

from __future__ import annotations

import asyncio
import io
import re
import time

import pytest

from consumers.replay.progress import Progress, RateLimiter
from consumers.replay.selection import ReplayError, Selection, parse_types
from schemas.event_types import EventType
from schemas.times import format_ms, parse_duration_ms, parse_time_ms

NOW = 1_750_000_000_000


def test_times_absolute_relative_epoch() -> None:
    assert parse_time_ms("2025-05-02T07:31:12Z") == 1746171072000
    assert parse_time_ms("2025-05-02T07:31:12.402918311Z") == 1746171072402
    assert parse_time_ms("2025-05-02T09:31:12+02:00") == 1746171072000
    assert parse_time_ms("2025-05-02T07:31:12") == 1746171072000  # no zone: UTC
    assert parse_time_ms("2025-05-02") == 1746144000000
    assert parse_time_ms("2h", now=NOW) == NOW - 7_200_000
    assert parse_time_ms("-30m", now=NOW) == NOW - 1_800_000
    assert parse_time_ms("7d", now=NOW) == NOW - 7 * 86_400_000
    assert parse_time_ms("1h30m", now=NOW) == NOW - 5_400_000
    assert parse_time_ms("now", now=NOW) == NOW
    assert parse_time_ms("1746171072402") == 1746171072402
    assert parse_time_ms("1746171072") == 1746171072000
    assert format_ms(1746171072402) == "2025-05-02T07:31:12.402Z"
    assert parse_time_ms(format_ms(1746171072402)) == 1746171072402
    assert parse_duration_ms("0") == 0 and parse_duration_ms("90s") == 90_000
    for bad in ("yesterday", "2 h", "h2", ""):
        with pytest.raises(ValueError):
            parse_time_ms(bad, now=NOW)


def test_selection() -> None:
    assert parse_types(None) == tuple(EventType)
    assert parse_types(["state,data", "alerts"]) == (EventType.DATA, EventType.STATE, EventType.ALERTS)
    with pytest.raises(ReplayError, match="unknown event type"):
        parse_types(["data,bogus"])
    sel = Selection.build(types=["data"], from_ms=100, to_ms=200, vins=["A"])
    assert sel.in_window(100) and sel.in_window(199) and not sel.in_window(200) and not sel.in_window(99)
    assert sel.wants_vin("A") and not sel.wants_vin("B") and not sel.wants_vin(None)
    assert Selection.build(to_ms=5).wants_vin(None)
    assert sel.topics("p") == {"p.data": EventType.DATA}
    with pytest.raises(ReplayError):
        Selection.build(from_ms=200, to_ms=100)


def test_progress_line_and_tty_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    p = Progress(1000, stream=tty)
    assert p.enabled
    p.scanned(400)
    p.add_sent(40)
    p.tick(force=True)
    p.skip(600)
    p.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.getvalue())  # rich's colours and cursor moves
    assert text.startswith("replay ") and text.endswith("\n")
    frames = [f for f in re.split(r"[\r\n]", text) if f.strip()]
    assert "100%" in frames[-1] and "1000/1000 rec" in frames[-1] and "40 events" in frames[-1]
    assert "ETA" in frames[-1]
    assert any("40%" in f and "400/1000 rec" in f for f in frames)

    piped = io.StringIO()
    q = Progress(10, stream=piped)
    assert not q.enabled
    q.scanned(10)
    q.close()
    assert piped.getvalue() == ""


def test_rate_limiter_spaces_events() -> None:
    async def run() -> float:
        lim = RateLimiter(50)
        t0 = time.monotonic()
        for _ in range(11):
            await lim.wait()
        return time.monotonic() - t0

    assert asyncio.run(run()) >= 0.19  # 10 intervals of 20 ms
    assert RateLimiter(None).interval == 0


def test_seen_ids_first_copy_wins_and_memory_is_bounded_by_the_horizon() -> None:
    from consumers.replay.dedup import SeenIds

    h = 3_600_000
    seen = SeenIds(horizon_ms=h)
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    assert seen.first(a, 0) and seen.first(b, 10)
    assert not seen.first(a, h - 1)  # a redelivery inside the horizon: left out, counted
    assert seen.duplicates == 1
    assert seen.first(c, 2 * h)  # the partition moved on: a and b are forgotten
    assert len(seen) == 1
    assert seen.first(a, 2 * h + 1)  # (a copy that late would be emitted again: the documented limit)
    forever = SeenIds(horizon_ms=0)
    for i in range(100):
        assert forever.first(f"{i:032x}", i * h)
    assert not forever.first(f"{0:032x}", 10**12) and len(forever) == 100
