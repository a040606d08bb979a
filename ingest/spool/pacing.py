"""When the next group commit may start: at once when the spool was idle, at most one per
``gather_s`` while it is busy.

Each group commit blocks the event loop for its write + fdatasync (≈0.1–0.3 ms on an idle disk,
ms when the disk is shared), whatever the number of requests it carries. Committing back to back
under load (the next commit as soon as the previous one ends) turns a moderate rate into thousands
of fdatasyncs a second: at 6,750 requests/s, 2,850 commits of 2.4 requests each kept the loop 38 %
of the time in fdatasync on top of the requests' own work, and at that load the loop queues (p99
5–8 ms with the receiver alone, docs/performance.md). Spacing commits while busy gathers more
requests into each and leaves the loop free for the requests; a request that finds the spool idle
(no commit started within ``gather_s``) is committed at once, so a quiet receiver answers as fast
as before. The event loop's timers have millisecond resolution, so the wait is in whole ms.
"""

from __future__ import annotations

__all__ = ["CommitPacer"]


class CommitPacer:
    """``wait_s(now)``: how long the commit loop waits before committing what is pending;
    ``started(now)``: a commit starts."""

    __slots__ = ("_last_start", "gather_s")

    def __init__(self, gather_s: float) -> None:
        self.gather_s = gather_s
        self._last_start = float("-inf")

    def wait_s(self, now: float) -> float:
        """0 when idle (no commit started in the last ``gather_s``), else the rest of that interval."""
        return max(0.0, self._last_start + self.gather_s - now)

    def started(self, now: float) -> None:
        self._last_start = now
