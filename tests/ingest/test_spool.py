"""The durable spool on its own: group commit, order, limits, segment lifecycle and crash recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ingest.errors import CorruptFrameError, IncompleteFrameError, SpoolFullError, SpoolWriteError
from ingest.spool import frame
from ingest.spool.files import CURSOR_NAME, Position, list_segments, segment_path
from ingest.spool.log import Spool
from tests.support.processes import tpipe_env


def _frame(i: int, size: int = 200) -> bytes:
    value = orjson.dumps({"i": i, "pad": "x" * size})
    return frame.encode(value, 1000 + i)


def _values(records: list[frame.SpooledBody]) -> list[int]:
    return [orjson.loads(r.body)["i"] for r in records]


async def _open(root: Path, **kw: int) -> Spool:
    spool = Spool(root, max_bytes=kw.get("max_bytes", 1 << 30), segment_bytes=kw.get("segment_bytes", 1 << 20))
    spool.open()
    spool.start()
    return spool


def _read_all(spool: Spool) -> tuple[list[frame.SpooledBody], Position]:
    return spool.read(spool.cursor, max_records=1_000_000)


async def test_concurrent_appends_share_fsyncs_and_keep_order(tmp_path: Path) -> None:
    spool = await _open(tmp_path)
    await asyncio.gather(*(spool.append([_frame(i)]) for i in range(300)))
    records, _ = _read_all(spool)
    assert sorted(_values(records)) == list(range(300))
    assert _values(records) == list(range(300)), "appends are stored in the order they were made"
    assert spool.commits < 300 / 3, f"group commit should batch requests, got {spool.commits} fsyncs for 300"
    r = records[5]
    assert (r.received_at_ms, r.legacy_topic) == (1005, None)
    await spool.close()


async def test_appended_frames_survive_reopen(tmp_path: Path) -> None:
    spool = await _open(tmp_path)
    for i in range(10):
        await spool.append([_frame(i)])
    await spool.close()
    again = await _open(tmp_path)
    assert again.recovery is not None and again.recovery.pending_events == 10
    assert _values(_read_all(again)[0]) == list(range(10))
    await again.close()


async def test_cursor_advance_deletes_forwarded_segments_and_persists(tmp_path: Path) -> None:
    spool = await _open(tmp_path, segment_bytes=4096)
    for i in range(60):
        await spool.append([_frame(i)])
    assert len(list_segments(tmp_path)) > 3
    records, end = spool.read(spool.cursor, max_records=40)
    assert _values(records) == list(range(40))
    spool.advance(end, len(records))
    await spool.synced()  # the cursor write and the deletions run on the spool's I/O thread
    assert min(list_segments(tmp_path)) == end.segment, "segments before the cursor are deleted"
    assert spool.stats().pending_events == 20
    await spool.close()
    again = await _open(tmp_path, segment_bytes=4096)
    assert _values(_read_all(again)[0]) == list(range(40, 60)), "the cursor survives a restart"
    await again.close()


async def test_advances_while_a_cursor_write_is_queued_share_it(tmp_path: Path) -> None:
    """Kafka acknowledging chunk after chunk faster than the disk syncs the cursor: one cursor write
    carries them all (the newest position), and every finished segment is still deleted."""
    spool = await _open(tmp_path, segment_bytes=4096)
    for i in range(60):
        await spool.append([_frame(i)])
    assert spool._cursor_file is not None
    writes_before = spool._cursor_file.seq
    pos, advances = spool.cursor, 0
    while True:  # one frame per chunk, each acknowledged at once, without yielding to the I/O thread's result
        records, end = spool.read(pos, max_records=1)
        if not records:
            break
        spool.advance(end, 1)
        pos, advances = end, advances + 1
    await spool.synced()
    assert advances == 60
    assert spool._cursor_file.seq - writes_before < advances / 2, "advances queued meanwhile share one write"
    assert spool._cursor_file.position == spool.cursor, "the newest position is the durable one"
    assert list_segments(tmp_path) == [spool.cursor.segment], "every forwarded segment is deleted"
    await spool.close()


async def test_reads_take_what_they_return_and_whole_frames_larger_than_a_read(tmp_path: Path) -> None:
    """A chunk is read in pieces of about what it returns; a frame larger than a piece is read whole."""
    from ingest.spool import reader

    spool = await _open(tmp_path, segment_bytes=64 << 20)
    sizes = [100, 300_000, 50, 2_000_000, 10]  # a 2 MB body is far beyond a one-record read
    for i, size in enumerate(sizes):
        await spool.append([_frame(i, size)])
    pos, got = spool.cursor, []
    while True:
        records, pos = spool.read(pos, max_records=1)
        if not records:
            break
        got.extend(_values(records))
    assert got == list(range(len(sizes)))
    assert reader.unread_bytes(spool.committed_sizes()[0], spool.cursor) == spool.pending_bytes()
    assert spool.unread_bytes(pos) == 0
    await spool.close()


async def test_a_chunk_read_from_a_backlog_reads_about_what_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks taken from a long backlog: each read takes about its own frames, not the rest of the segment;
    the segment stays open between chunks (one pread each)."""
    spool = await _open(tmp_path, segment_bytes=64 << 20)
    for i in range(0, 2000, 100):
        await spool.append([_frame(j, 1500) for j in range(i, i + 100)])
    read_bytes, opens, real_pread, real_open = 0, 0, os.pread, os.open

    def pread(fd: int, n: int, offset: int) -> bytes:
        nonlocal read_bytes
        data = real_pread(fd, n, offset)
        read_bytes += len(data)
        return data

    def counting_open(path: object, flags: int, *args: int) -> int:
        nonlocal opens
        opens += 1
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "pread", pread)
    monkeypatch.setattr(os, "open", counting_open)
    pos, got = spool.cursor, 0
    while True:
        records, pos = spool.read(pos, max_records=50)
        if not records:
            break
        got += len(records)
    assert got == 2000
    assert read_bytes < 2 * spool.pending_bytes(), f"{read_bytes} bytes read for {spool.pending_bytes()}"
    assert opens == 1, "one open for the chunks of one segment"
    await spool.close()


async def test_full_spool_refuses_then_recovers_after_forwarding(tmp_path: Path) -> None:
    one = len(_frame(0))
    spool = await _open(tmp_path, max_bytes=one * 5)
    for i in range(5):
        await spool.append([_frame(i)])
    with pytest.raises(SpoolFullError):
        await spool.append([_frame(5)])
    assert not spool.stats().writable
    records, end = _read_all(spool)
    assert _values(records) == list(range(5)), "a refused append stores nothing"
    spool.advance(end, len(records))
    await spool.append([_frame(6)])
    assert _values(_read_all(spool)[0]) == [6]
    await spool.close()


async def test_torn_tail_is_cut_moved_aside_and_reported(tmp_path: Path) -> None:
    spool = await _open(tmp_path)
    for i in range(20):
        await spool.append([_frame(i)])
    await spool.close()
    seg = segment_path(tmp_path, list_segments(tmp_path)[0])
    good_size = seg.stat().st_size
    torn = _frame(99)[:-37]  # a crash in the middle of a write
    with open(seg, "ab") as fh:
        fh.write(torn)
    again = await _open(tmp_path)
    rep = again.recovery
    assert rep is not None and rep.pending_events == 20
    assert rep.damaged_bytes == len(torn)
    assert seg.stat().st_size == good_size, "the valid prefix is kept, the torn bytes are cut"
    saved = Path(rep.damaged[0].saved_to)
    assert saved.read_bytes() == torn, "the damaged bytes are kept aside, not dropped"
    report = [orjson.loads(line) for line in (tmp_path / "corrupt" / "report.jsonl").read_bytes().splitlines()]
    assert report[0]["bytes"] == len(torn) and report[0]["reason"].startswith("torn")
    await again.append([_frame(100)])
    assert _values(_read_all(again)[0]) == [*range(20), 100]
    await again.close()


async def test_corruption_inside_a_segment_loses_only_the_damaged_frame(tmp_path: Path) -> None:
    spool = await _open(tmp_path)
    for i in range(10):
        await spool.append([_frame(i)])
    await spool.close()
    seg = segment_path(tmp_path, list_segments(tmp_path)[0])
    data = bytearray(seg.read_bytes())
    size = len(_frame(0))
    data[3 * size + 40] ^= 0xFF  # flip one bit pattern inside frame 3's body
    seg.write_bytes(bytes(data))
    again = await _open(tmp_path)
    rep = again.recovery
    assert rep is not None and len(rep.damaged) == 1
    assert (rep.damaged[0].start, rep.damaged[0].end) == (3 * size, 4 * size)
    assert _values(_read_all(again)[0]) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    await again.close()


async def test_disk_full_answers_with_an_error_and_recovers(tmp_path: Path) -> None:
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert res.returncode == 0, f"this test needs to mount a small tmpfs (root): {res.stderr}"
    try:
        spool = await _open(mnt, max_bytes=1 << 30)
        stored = 0
        with pytest.raises(SpoolWriteError):
            for i in range(10_000):
                await spool.append([_frame(i, size=1000)])
                stored += 1
        assert spool.stats().last_write_error is not None and not spool.stats().writable
        records, end = _read_all(spool)
        assert _values(records) == list(range(stored)), "exactly the acknowledged frames are on disk"
        spool.advance(end, len(records))  # forwarding frees the space
        await spool.append([_frame(-1)])
        assert _values(_read_all(spool)[0]) == [-1]
        assert spool.stats().writable
        await spool.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_frame_roundtrip_and_resync() -> None:
    frames = [_frame(i) for i in range(3)]
    buf = b"".join(frames)
    rec, nxt = frame.decode_at(buf, 0)
    assert nxt == len(frames[0]) and orjson.loads(rec.body)["i"] == 0
    broken = bytearray(buf)
    broken[10] ^= 1
    with pytest.raises(CorruptFrameError):
        frame.decode_at(bytes(broken), 0)
    assert frame.next_valid(bytes(broken), 0) == len(frames[0])
    with pytest.raises(IncompleteFrameError):
        frame.decode_at(buf[:-1], 2 * len(frames[0]))


async def test_preallocated_zero_tail_is_the_clean_end_after_a_crash(tmp_path: Path) -> None:
    spool = await _open(tmp_path, segment_bytes=1 << 20)
    for i in range(50):
        await spool.append([_frame(i)])
    await spool.synced()  # the zero-fill ran on the I/O thread
    (seg,) = list_segments(tmp_path)
    written = sum(len(_frame(i)) for i in range(50))
    path = tmp_path / f"{seg:020d}.seg"
    assert path.stat().st_size > written, "space ahead of the writes is already allocated (zeros)"
    assert path.read_bytes()[written:].count(0) == path.stat().st_size - written
    # crash: no close; a new receiver recovers the same directory
    again = Spool(tmp_path, max_bytes=1 << 30, segment_bytes=1 << 20)
    rep = again.open()
    assert rep.damaged_bytes == 0 and not (tmp_path / "corrupt").exists(), "zeros are not damage"
    assert rep.pending_events == 50 and rep.segments[seg] == written
    assert path.stat().st_size == written, "the zero tail is cut at recovery"
    again.start()
    assert _values(_read_all(again)[0]) == list(range(50))
    await again.close()
    await spool.close()


def _modes(root: Path) -> dict[str, int]:
    """Permission bits of the spool directory ("." ) and of everything under it, by relative path."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


async def _spool_with_every_kind_of_file(root: Path) -> None:
    """Segments (several), the cursor, and a quarantined torn tail with its report."""
    spool = await _open(root, segment_bytes=4096)
    for i in range(40):
        await spool.append([_frame(i)])
    await spool.close()
    with open(segment_path(root, list_segments(root)[-1]), "ab") as fh:
        fh.write(_frame(99)[:-37])  # a torn write
    again = await _open(root, segment_bytes=4096)
    assert again.recovery is not None and again.recovery.damaged
    records, end = again.read(again.cursor, max_records=10)  # forward some: the cursor is written
    again.advance(end, len(records))
    await again.append([_frame(100)])
    await again.close()


@pytest.mark.parametrize("umask", [0o002, 0o000])
async def test_a_new_spool_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "var" / "spool"
    old = os.umask(umask)
    try:
        await _spool_with_every_kind_of_file(root)
    finally:
        os.umask(old)
    modes = _modes(root)
    files = {name for name in modes if name != "." and name != "corrupt"}
    assert CURSOR_NAME in files and "corrupt/report.jsonl" in files
    assert any(n.endswith(".seg") for n in files) and any(n.endswith(".bin") for n in files)
    assert modes["."] == 0o700 and modes["corrupt"] == 0o700, modes
    assert {n: m for n, m in modes.items() if n in files and m != 0o600} == {}, "every file is 0600"


async def test_an_existing_loose_spool_is_tightened_on_open_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "spool"
    await _spool_with_every_kind_of_file(root)
    pending = _values(_read_all(await _open(root, segment_bytes=4096))[0])
    for p in [root, root / "corrupt"]:  # as an older version or a careless copy left them
        os.chmod(p, 0o755)
    for p in root.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o644)
    with caplog.at_level(logging.WARNING, logger="tpipe.spool"):
        again = await _open(root, segment_bytes=4096)
    modes = _modes(root)
    assert modes["."] == 0o700 and modes["corrupt"] == 0o700
    assert {n: m for n, m in modes.items() if n not in (".", "corrupt") and m != 0o600} == {}
    (rec,) = [r for r in caplog.records if r.getMessage() == "spool permissions tightened"]
    changed = rec.changed  # type: ignore[attr-defined]
    assert f"{CURSOR_NAME} 644->600" in changed and "corrupt/report.jsonl 644->600" in changed
    assert f"{root.name}/ 755->700" in changed and "corrupt/ 755->700" in changed
    assert _values(_read_all(again)[0]) == pending, "the data is untouched"
    await again.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpipe.spool"):
        await (await _open(root, segment_bytes=4096)).close()
    assert not [r for r in caplog.records if r.getMessage() == "spool permissions tightened"], "nothing to do now"


_OPEN_AND_APPEND = """
import asyncio, sys
from pathlib import Path
from ingest.spool import frame
from ingest.spool.log import Spool
from plumbing.logs import configure_logging

async def main() -> None:
    spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30, segment_bytes=1 << 20)
    spool.open()
    spool.start()
    await spool.append([frame.encode(b"{}", 1)])
    await spool.close()

configure_logging("INFO")
asyncio.run(main())
"""


def test_a_spool_dir_the_receiver_does_not_own_opens_and_says_so(tmp_path: Path) -> None:
    """A volume root owned by someone else with a group set (Kubernetes' fsGroup): the spool cannot chmod
    it, so it logs that and opens anyway; the files it creates are 0600. Runs without CAP_FOWNER, so root
    is refused like any other non-owner."""
    root = tmp_path / "spool"
    root.mkdir()
    os.chown(root, 65534, 65534)
    os.chmod(root, 0o2775)
    res = subprocess.run(
        ["setpriv", "--bounding-set=-fowner", "--inh-caps=-fowner", sys.executable, "-c", _OPEN_AND_APPEND,
         str(root)],
        capture_output=True, text=True, timeout=60, check=False,
        env=tpipe_env(),
    )
    assert res.returncode == 0, res.stderr
    assert "spool permissions could not be tightened (not the owner)" in res.stderr
    assert "Operation not permitted" in res.stderr
    modes = _modes(root)
    assert modes["."] == 0o2775  # left as it was
    files = {n: m for n, m in modes.items() if n != "."}
    assert CURSOR_NAME in files and any(n.endswith(".seg") for n in files)
    assert set(files.values()) == {0o600}
