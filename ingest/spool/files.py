"""Where the spool lives on disk: segment files, the forward cursor, the quarantine folder.

Everything in it holds webhook bodies (VINs, positions), so it is private to the receiver's user
whatever the umask: the spool directory and ``corrupt/`` are 0700, every file 0600. New ones are
created so (``open_private``, ``private_dir``); ``secure_spool_dir`` tightens what an earlier
version or another tool left looser, and logs what it changed.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SEGMENT_SUFFIX = ".seg"
CURSOR_NAME = "cursor.json"
QUARANTINE_DIR = "corrupt"
DIR_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger("tpipe.spool")


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)``, the file exactly 0600 (the umask could only narrow it)."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(path: Path) -> bool:
    """Create ``path`` (and its parents) with ``path`` itself 0700; True when it already existed."""
    existed = path.is_dir()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if not existed:
        os.chmod(path, DIR_MODE)  # mkdir's mode went through the umask
    return existed


def secure_spool_dir(root: Path) -> None:
    """Make the spool directory private: create it 0700, or tighten an existing one and what is in it
    (the directory and ``corrupt/`` to 0700, regular files to 0600), logging each change.

    A directory this user does not own (a volume's root owned by root with a group set, as Kubernetes'
    ``fsGroup`` makes it) cannot be changed: that is logged and the spool opens anyway; the files it
    creates are 0600 all the same.
    """
    if not private_dir(root):
        return
    changed: list[str] = []
    refused: list[str] = []

    def tighten(path: str, mode: int, want: int, label: str) -> None:
        if mode == want:
            return
        try:
            os.chmod(path, want)
        except PermissionError as exc:
            refused.append(f"{label} {mode:o}: {exc.strerror}")
        else:
            changed.append(f"{label} {mode:o}->{want:o}")

    for d in (root, root / QUARANTINE_DIR):
        try:
            dir_mode = stat.S_IMODE(os.lstat(d).st_mode)
        except FileNotFoundError:
            continue
        tighten(str(d), dir_mode, DIR_MODE, f"{d.name}/")
        for entry in os.scandir(d):
            if entry.is_file(follow_symlinks=False):
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                tighten(entry.path, mode, FILE_MODE, os.path.relpath(entry.path, root))
    if changed:
        log.warning("spool permissions tightened", extra={"spool_dir": str(root), "changed": changed})
    if refused:
        log.warning("spool permissions could not be tightened (not the owner)",
                    extra={"spool_dir": str(root), "refused": refused})


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
        self._fd = open_private(path, os.O_RDWR)
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
