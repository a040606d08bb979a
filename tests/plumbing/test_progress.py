"""``ProgressBar``'s listener: the numbers of the bar, at the bar's pace, with or without a terminal
(the console draws its own bar from them; ``tpipe replay`` keeps its rich bar)."""

from __future__ import annotations

import io

from plumbing.progress import ProgressBar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_listener_gets_the_bars_numbers_and_the_bar_still_draws() -> None:
    seen: list[tuple[int, int, int]] = []
    tty = _Tty()
    bar = ProgressBar(1000, stream=tty, on_update=lambda *n: seen.append(n))
    for _ in range(1000):  # one call per record, as a replay makes them
        bar.scanned()
        bar.add_sent()
    bar.close()
    assert seen[-1] == (1000, 1000, 1000)
    assert len(seen) < 50  # pushed at most ten times a second and at the end, not per record
    assert "1000/1000\x1b[0m rec | 1,000 events" in tty.getvalue()
    bar.scanned()
    assert seen[-1] == (1000, 1000, 1000)  # nothing after close


def test_without_a_terminal_only_the_listener_hears() -> None:
    seen: list[tuple[int, int, int]] = []
    piped = io.StringIO()
    bar = ProgressBar(0, stream=piped, on_update=lambda *n: seen.append(n))
    bar.add_total(10)
    bar.scanned(4)
    bar.skip(6)
    bar.add_sent(3)
    bar.close()
    assert not bar.enabled and piped.getvalue() == ""
    assert seen[0] == (0, 10, 0) and seen[-1] == (10, 10, 3)
