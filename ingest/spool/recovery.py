"""Spool recovery at start: keep every valid frame, move damaged bytes aside and report them.

A crash can leave a torn frame at the end of the last segment; a disk can flip bits anywhere. A
zero-filled tail is preallocated space (``Spool`` zero-fills ahead of its writes): it is the clean
end of the segment, truncated away, not damage. Every
unforwarded byte is checked against its frame CRC. Damaged ranges are copied to ``corrupt/`` with a
line in ``corrupt/report.jsonl`` (never silently dropped); the torn tail of a segment is truncated so
the good prefix stays readable. The forwarder skips the same ranges with the same rule
(``frame.next_valid``), so nothing after a damaged range is lost.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ingest.errors import CorruptFrameError, IncompleteFrameError
from ingest.spool import frame
from ingest.spool.files import (
    QUARANTINE_DIR,
    Position,
    fsync_dir,
    list_segments,
    open_private,
    private_dir,
    read_cursor,
    secure_spool_dir,
    segment_path,
)

log = logging.getLogger("tpipe.spool")


@dataclass(slots=True)
class DamagedRange:
    segment: int
    start: int
    end: int
    saved_to: str


@dataclass(slots=True)
class RecoveryReport:
    cursor: Position
    segments: dict[int, int] = field(default_factory=dict)  # segment -> size after recovery
    pending_events: int = 0
    oldest_spooled_ms: int | None = None
    # (position after the last frame of a segment, spooled_at of the segment's first pending frame, count)
    pending_runs: list[tuple[Position, int, int]] = field(default_factory=list)
    damaged: list[DamagedRange] = field(default_factory=list)

    @property
    def damaged_bytes(self) -> int:
        return sum(d.end - d.start for d in self.damaged)


def _quarantine(root: Path, seg: int, start: int, data: bytes, reason: str) -> DamagedRange:
    qdir = root / QUARANTINE_DIR
    private_dir(qdir)
    name = f"{seg:020d}-{start}-{start + len(data)}.bin"
    with os.fdopen(open_private(qdir / name, os.O_WRONLY | os.O_TRUNC), "wb") as saved:
        saved.write(data)
    entry = {
        "segment": seg,
        "start": start,
        "end": start + len(data),
        "bytes": len(data),
        "reason": reason,
        "saved_to": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with os.fdopen(open_private(qdir / "report.jsonl", os.O_WRONLY | os.O_APPEND), "ab") as fh:
        fh.write(orjson.dumps(entry) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.error("spool damage moved aside", extra={"spool_damage": entry})
    return DamagedRange(seg, start, start + len(data), str(qdir / name))


_NONZERO = re.compile(rb"[^\x00]")


def _content_end(data: bytes) -> int:
    """Length without the trailing zeros (preallocated, never written)."""
    return len(data.rstrip(b"\0"))


def recover(root: Path) -> RecoveryReport:
    secure_spool_dir(root)
    cursor, _ = read_cursor(root)
    report = RecoveryReport(cursor=cursor)
    segments = list_segments(root)
    for seg in segments:
        path = segment_path(root, seg)
        if seg < cursor.segment:  # fully forwarded, deletion was interrupted
            path.unlink(missing_ok=True)
            continue
        data = path.read_bytes()
        off = cursor.offset if seg == cursor.segment else 0
        off = min(off, len(data))
        first_ms: int | None = None
        count = 0
        truncate_at: int | None = None
        clean_end = off  # after the last good frame: where a zero (preallocated) tail may start
        while off < len(data):
            if data[off] == 0:  # zeros: preallocated space, never a frame (frames start with the magic)
                nonzero = _NONZERO.search(data, off)
                if nonzero is None:  # the clean end of what was written
                    truncate_at = clean_end
                    break
                off = nonzero.start()
            try:
                rec, nxt = frame.decode_at(data, off)
            except (CorruptFrameError, IncompleteFrameError) as exc:
                good = frame.next_valid(data, off)
                end = good if good is not None else _content_end(data)
                reason = "torn frame at end of segment" if isinstance(exc, IncompleteFrameError) else "bad checksum or header"
                report.damaged.append(_quarantine(root, seg, off, data[off:max(end, off + 1)], reason))
                if good is None:
                    truncate_at = clean_end
                    break
                off = good
                continue
            clean_end = nxt
            if first_ms is None:
                first_ms = rec.spooled_at_ms
            count += 1
            off = nxt
        if truncate_at is not None:
            with open(path, "r+b") as fh:
                fh.truncate(truncate_at)
                fh.flush()
                os.fsync(fh.fileno())
        size = truncate_at if truncate_at is not None else len(data)
        report.segments[seg] = size
        if count:
            report.pending_events += count
            report.pending_runs.append((Position(seg, size), first_ms or 0, count))
            if report.oldest_spooled_ms is None:
                report.oldest_spooled_ms = first_ms
    if report.damaged:
        fsync_dir(root)
    return report
