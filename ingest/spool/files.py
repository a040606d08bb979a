"""Where the spool lives on disk: segment files, the forward cursor, the quarantine folder."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SEGMENT_SUFFIX = ".seg"
CURSOR_NAME = "cursor.json"
QUARANTINE_DIR = "corrupt"


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """A place in the spool: segment number and byte offset inside it."""

    segment: int
    offset: int


def segment_path(root: Path, segment: int) -> Path:
    return root / f"{segment:020d}{SEGMENT_SUFFIX}"


def list_segments(root: Path) -> list[int]:
    out = []
    for p in root.iterdir():
        if p.suffix == SEGMENT_SUFFIX and p.stem.isdigit():
            out.append(int(p.stem))
    return sorted(out)


def fsync_dir(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The cursor file has two fixed 32-byte slots written alternately in place (seq, segment, offset,
# crc). Writing in place needs no new disk blocks, so the forwarder can still advance — and free
# space — when the disk is full; the slot with the highest valid seq wins after a torn write.
_SLOT = struct.Struct("<QQQI4x")


def _slot_crc(seq: int, segment: int, offset: int) -> int:
    return zlib.crc32(struct.pack("<QQQ", seq, segment, offset))


def read_cursor(root: Path) -> tuple[Position, int]:
    """The last durable cursor and its sequence number ((0, 0), 0 when there is none)."""
    try:
        data = (root / CURSOR_NAME).read_bytes()
    except FileNotFoundError:
        return Position(0, 0), 0
    best: tuple[int, Position] | None = None
    for i in range(2):
        chunk = data[i * _SLOT.size : (i + 1) * _SLOT.size]
        if len(chunk) < _SLOT.size:
            continue
        seq, seg, off, crc = _SLOT.unpack(chunk)
        if crc == _slot_crc(seq, seg, off) and (best is None or seq > best[0]):
            best = (seq, Position(seg, off))
    return (best[1], best[0]) if best else (Position(0, 0), 0)


class CursorFile:
    """Durable forward position, updated in place (no allocation)."""

    def __init__(self, root: Path) -> None:
        path = root / CURSOR_NAME
        self.position, self.seq = read_cursor(root)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size < 2 * _SLOT.size:
            os.pwrite(self._fd, b"\0" * (2 * _SLOT.size), 0)
            if self.seq:
                self.write(self.position)
            os.fsync(self._fd)
            fsync_dir(root)

    def write(self, pos: Position) -> None:
        self.seq += 1
        slot = self.seq % 2
        os.pwrite(self._fd, _SLOT.pack(self.seq, pos.segment, pos.offset, _slot_crc(self.seq, pos.segment, pos.offset)),
                  slot * _SLOT.size)
        os.fdatasync(self._fd)
        self.position = pos

    def close(self) -> None:
        os.close(self._fd)
