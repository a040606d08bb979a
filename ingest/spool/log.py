"""The durable spool: an append-only, checksummed, segmented log with group commit.

Requests call ``await spool.append(frames)``; it returns once those bytes are written **and fsync'd**.
Appends that arrive while a write+fsync is in progress are gathered and committed together by the
next one (group commit), so one fsync serves many requests. The forwarder reads committed frames
from disk (``read``), publishes them, and then ``advance``s the durable cursor; fully forwarded
segments are deleted. Nothing but this sits between a webhook request and its 202.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ingest.spool import frame
from ingest.spool.files import CursorFile, Position, fsync_dir, list_segments, segment_path
from ingest.spool.recovery import RecoveryReport, recover

log = logging.getLogger("tpipe.spool")


class SpoolFull(Exception):
    """Accepting these bytes would pass the configured maximum of unforwarded data."""


class SpoolWriteError(Exception):
    """The write or fsync failed (disk full, I/O error): nothing of this batch is acknowledged."""


@dataclass(slots=True)
class SpoolStats:
    pending_events: int
    pending_bytes: int
    oldest_age_s: float | None
    segments: int
    max_bytes: int
    last_write_error: str | None
    damaged_bytes_recovered: int
    full: bool

    @property
    def writable(self) -> bool:
        return self.last_write_error is None and not self.full


class Spool:
    def __init__(self, root: Path, *, max_bytes: int, segment_bytes: int, commit_delay_s: float = 0.0) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.commit_delay_s = commit_delay_s
        self.recovery: RecoveryReport | None = None
        self._sizes: dict[int, int] = {}
        self._cursor = Position(0, 0)
        self._active = 0
        self._fd = -1
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._pending_count = 0
        self._pending_ids: list[str] = []
        self._wakeup = asyncio.Event()
        self.committed = asyncio.Event()  # set after each commit: the forwarder waits on it
        self._events = 0
        # one entry per commit: (end position, spooled_at_ms, events) for depth and age accounting
        self._runs: deque[tuple[Position, int, int]] = deque()
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-io")
        self._closing = False
        self._writing = False
        self._cursor_file: CursorFile | None = None
        self.commits = 0  # group commits done (each one write + fdatasync)
        self._refused_full = False  # an append was refused for size and nothing was forwarded since

    # ---- lifecycle -----------------------------------------------------------------------------
    def open(self) -> RecoveryReport:
        """Recover what is on disk and open a fresh segment for appends (synchronous, at start)."""
        self.root.mkdir(parents=True, exist_ok=True)
        rep = recover(self.root)
        self._cursor_file = CursorFile(self.root)
        self.recovery = rep
        self._cursor = rep.cursor
        self._sizes = dict(rep.segments)
        self._events = rep.pending_events
        self._runs = deque(rep.pending_runs)
        existing = list_segments(self.root)
        self._active = (existing[-1] + 1) if existing else max(self._cursor.segment, 0)
        self._open_segment(self._active)
        first = min(self._sizes)
        if self._cursor.segment not in self._sizes or self._cursor < Position(first, 0):
            self._cursor = Position(first, 0)
        return rep

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._commit_loop(), name="spool-commit")

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._cursor_file is not None:
            self._cursor_file.close()
        self._io.shutdown(wait=True)

    def _open_segment(self, seg: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(segment_path(self.root, seg), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._sizes.setdefault(seg, 0)
        fsync_dir(self.root)

    # ---- write path ----------------------------------------------------------------------------
    def pending_bytes(self) -> int:
        total = sum(self._sizes.values())
        return total - self._cursor.offset if self._cursor.segment in self._sizes else total

    async def append(self, frames: list[bytes], event_ids: list[str] | None = None) -> None:
        """Durably store ``frames``; returns after fsync. Raises SpoolFull or SpoolWriteError.

        ``event_ids`` only feed the one log line written per group commit.
        """
        size = sum(map(len, frames))
        if self._closing:
            raise SpoolWriteError("spool is closing")
        if self.pending_bytes() + self._pending_bytes + size > self.max_bytes:
            self._refused_full = True
            raise SpoolFull(f"spool holds {self.pending_bytes()} unforwarded bytes (max {self.max_bytes})")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.extend(frames)
        self._pending_bytes += size
        self._pending_count += len(frames)
        if event_ids:
            self._pending_ids.extend(event_ids)
        self._waiters.append(fut)
        self._wakeup.set()
        await fut

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            if self.commit_delay_s:
                await asyncio.sleep(self.commit_delay_s)
            data = b"".join(self._pending)
            waiters, count, ids = self._waiters, self._pending_count, self._pending_ids
            self._pending, self._waiters, self._pending_bytes, self._pending_count = [], [], 0, 0
            self._pending_ids = []
            started = time.perf_counter()
            try:
                if self._sizes[self._active] > 0 and self._sizes[self._active] + len(data) > self.segment_bytes:
                    self._active += 1
                    self._open_segment(self._active)
                self._writing = True
                await loop.run_in_executor(self._io, self._write_durably, data)
            except OSError as exc:
                self._writing = False
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.error("spool write failed", extra={"error": self._last_error, "events": count})
                err = SpoolWriteError(self._last_error)
                for w in waiters:
                    if not w.done():
                        w.set_exception(err)
                continue
            from tpipe.metrics import SPOOL_FSYNC_SECONDS

            elapsed = time.perf_counter() - started
            SPOOL_FSYNC_SECONDS.observe(elapsed)
            if log.isEnabledFor(logging.INFO):  # one line per group commit (= per batch of requests)
                log.info(
                    "spooled",
                    extra={"requests": len(waiters), "events": count, "bytes": len(data),
                           "commit_ms": round(elapsed * 1000, 3), "event_ids": ids},
                )
            self._writing = False
            self._last_error = None
            self.commits += 1
            self._sizes[self._active] += len(data)  # sizes only ever count fsync'd bytes
            self._events += count
            end, now_ms = Position(self._active, self._sizes[self._active]), int(time.time() * 1000)
            if self._runs and now_ms - self._runs[-1][1] < 1000:  # one entry per second, however many commits
                _, first_ms, n = self._runs[-1]
                self._runs[-1] = (end, first_ms, n + count)
            else:
                self._runs.append((end, now_ms, count))
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            self.committed.set()

    def _write_durably(self, data: bytes) -> None:
        """Runs on the spool's I/O thread: append, fdatasync; undo a partial write on failure."""
        fd = self._fd
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, before)
            except OSError:
                log.exception("could not truncate a failed spool write")
            raise

    # ---- read path (the forwarder) -------------------------------------------------------------
    @property
    def cursor(self) -> Position:
        return self._cursor

    def has_unforwarded(self) -> bool:
        return self._events > 0

    def read(
        self, start: Position, *, max_records: int, max_bytes: int = 8 << 20
    ) -> tuple[list[frame.SpoolRecord], Position]:
        """Committed records from ``start`` on (at most ``max_records``) and the position after them.

        Only fsync'd bytes are visible. Damaged ranges (reported by recovery) are skipped with the
        same resynchronisation rule recovery used; finished segments are stepped over.
        """
        pos = start
        out: list[frame.SpoolRecord] = []
        while len(out) < max_records:
            size = self._sizes.get(pos.segment)
            if size is None or pos.offset >= size:
                later = [s for s in self._sizes if s > pos.segment]
                if not later:
                    break
                pos = Position(min(later), 0)
                continue
            path = segment_path(self.root, pos.segment)
            with open(path, "rb") as fh:
                fh.seek(pos.offset)
                buf = fh.read(min(size - pos.offset, max_bytes))
            off = 0
            while off < len(buf) and len(out) < max_records:
                try:
                    rec, nxt = frame.decode_at(buf, off)
                except frame.Incomplete:
                    if off == 0 and len(buf) < size - pos.offset:  # one frame larger than max_bytes
                        with open(path, "rb") as fh:
                            fh.seek(pos.offset)
                            buf = fh.read(size - pos.offset)
                        continue
                    if off == 0:  # a damaged tail: nothing more in this segment
                        off = len(buf)
                    break
                except frame.Corrupt:
                    good = frame.next_valid(buf, off)
                    off = good if good is not None else len(buf)
                    continue
                out.append(rec)
                off = nxt
            pos = Position(pos.segment, pos.offset + off)
        if pos.segment != self._active and pos.offset >= self._sizes.get(pos.segment, 0):
            later = [s for s in self._sizes if s > pos.segment]
            if later:
                pos = Position(min(later), 0)
        return out, pos

    def advance(self, new_cursor: Position, events: int) -> None:
        """Kafka confirmed everything before ``new_cursor``: persist it and delete finished segments."""
        assert self._cursor_file is not None
        self._cursor_file.write(new_cursor)
        self._cursor = new_cursor
        self._events = max(0, self._events - events)
        if events:
            self._refused_full = False
        while self._runs and self._runs[0][0] <= new_cursor:
            self._runs.popleft()
        for seg in [s for s in self._sizes if s < new_cursor.segment and s != self._active]:
            segment_path(self.root, seg).unlink(missing_ok=True)
            del self._sizes[seg]
        # Caught up with a large (or failing) active segment: start a new one so the old can go.
        active_size = self._sizes.get(self._active, 0)
        if (
            new_cursor == Position(self._active, active_size)
            and not self._writing
            and not self._pending
            and (active_size >= min(self.segment_bytes, 1 << 20) or self._last_error is not None)
        ):
            os.close(self._fd)
            self._fd = -1
            segment_path(self.root, self._active).unlink(missing_ok=True)
            del self._sizes[self._active]
            self._active += 1
            self._open_segment(self._active)
            self._cursor = Position(self._active, 0)
            self._cursor_file.write(self._cursor)

    # ---- observability -------------------------------------------------------------------------
    def stats(self) -> SpoolStats:
        oldest = None
        if self._events > 0 and self._runs:
            oldest = max(0.0, time.time() - self._runs[0][1] / 1000)
        return SpoolStats(
            pending_events=self._events,
            pending_bytes=self.pending_bytes(),
            oldest_age_s=oldest,
            segments=len(self._sizes),
            max_bytes=self.max_bytes,
            last_write_error=self._last_error,
            damaged_bytes_recovered=self.recovery.damaged_bytes if self.recovery else 0,
            full=self._refused_full or self.pending_bytes() >= self.max_bytes,
        )
