"""Where the spool lives on disk: segment files, the forward cursor, the quarantine folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

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


def read_cursor(root: Path) -> Position:
    try:
        data = orjson.loads((root / CURSOR_NAME).read_bytes())
        return Position(int(data["segment"]), int(data["offset"]))
    except FileNotFoundError:
        return Position(0, 0)


def write_cursor(root: Path, pos: Position) -> None:
    """Atomically replace the cursor (write, fsync, rename): after a crash it is the old or the new one."""
    tmp = root / (CURSOR_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, orjson.dumps({"segment": pos.segment, "offset": pos.offset}))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, root / CURSOR_NAME)
