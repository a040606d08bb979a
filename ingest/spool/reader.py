"""Reading committed frames out of spool segments: shared by the receiver's ``Spool`` (inline
forwarder) and the forwarder process's view of the same directory (``ingest.forward.process``)."""

from __future__ import annotations

import os
from pathlib import Path

from ingest.errors import CorruptFrameError, IncompleteFrameError
from ingest.spool import frame
from ingest.spool.files import Position, segment_path

#: bytes read at a time per record asked for (at least ``MIN_READ``): a chunk of 1,000 bench bodies
#: (0.5-3 KB) is read in about one piece, not as the whole rest of a segment of backlog (up to
#: ``max_bytes``) to keep 1.7 MB of it
READ_PER_RECORD = 2048
MIN_READ = 64 << 10


def unread_bytes(sizes: dict[int, int], pos: Position) -> int:
    """Committed bytes at and after ``pos`` (``sizes``: each segment's committed size)."""
    total = 0
    for seg, size in sizes.items():
        if seg > pos.segment:
            total += size
        elif seg == pos.segment:
            total += max(0, size - pos.offset)
    return total


class SegmentFiles:
    """The segment read last, kept open: a chunk costs one ``pread`` instead of open + fstat + seek +
    read + close. Its owner calls ``release_before(cursor_segment)`` when the cursor moves on, so a
    forwarded segment's space is freed once the receiver deletes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._segment = -1
        self._fd = -1

    def read(self, segment: int, offset: int, size: int) -> bytes:
        if segment != self._segment:
            self.close()
            self._fd = os.open(segment_path(self.root, segment), os.O_RDONLY | os.O_CLOEXEC)
            self._segment = segment
        return os.pread(self._fd, size, offset)

    def release_before(self, segment: int) -> None:
        if self._segment < segment:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._segment = -1, -1


def _read(root: Path, files: SegmentFiles | None, segment: int, offset: int, size: int) -> bytes:
    if files is not None:
        return files.read(segment, offset, size)
    with open(segment_path(root, segment), "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def read_frames(
    root: Path,
    sizes: dict[int, int],
    active: int,
    start: Position,
    *,
    max_records: int,
    max_bytes: int = 8 << 20,
    files: SegmentFiles | None = None,
) -> tuple[list[frame.SpooledBody], Position]:
    """Records from ``start`` on (at most ``max_records``) and the position after them.

    ``sizes`` maps each segment to its committed (fsync'd) size: nothing past it is read. Damaged
    ranges (reported by recovery) are skipped with the same resynchronisation rule recovery used;
    finished segments are stepped over; ``active`` is the segment still being appended to. Reads
    through ``files`` when given (the segment kept open). Reads
    ``max_records × READ_PER_RECORD`` bytes at a time (a frame larger than that: the whole frame).
    """
    pos = start
    step = min(max_bytes, max(MIN_READ, max_records * READ_PER_RECORD))
    out: list[frame.SpooledBody] = []
    while len(out) < max_records:
        size = sizes.get(pos.segment)
        if size is None or pos.offset >= size:
            later = [s for s in sizes if s > pos.segment]
            if not later:
                break
            pos = Position(min(later), 0)
            continue
        buf = _read(root, files, pos.segment, pos.offset, min(size - pos.offset, step))
        off = 0
        while off < len(buf) and len(out) < max_records:
            try:
                rec, nxt = frame.decode_at(buf, off)
            except IncompleteFrameError:
                if off == 0 and len(buf) < size - pos.offset:  # one frame larger than a read: all of it
                    want = min(size - pos.offset, max(frame.frame_size(buf), 2 * len(buf)))
                    buf = _read(root, files, pos.segment, pos.offset, want)
                    continue
                if off == 0:  # a damaged tail: nothing more in this segment
                    off = len(buf)
                break
            except CorruptFrameError:
                good = frame.next_valid(buf, off)
                off = good if good is not None else len(buf)
                continue
            out.append(rec)
            off = nxt
        pos = Position(pos.segment, pos.offset + off)
    if pos.segment != active and pos.offset >= sizes.get(pos.segment, 0):
        later = [s for s in sizes if s > pos.segment]
        if later:
            pos = Position(min(later), 0)
    return out, pos
