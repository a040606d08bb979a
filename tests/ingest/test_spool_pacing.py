"""The adaptive group commit: a request that finds the spool idle is committed at once; while the
spool is busy, commits are spaced by ``gather_s`` and gather the requests that arrive meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from ingest.spool import frame
from ingest.spool.log import Spool
from ingest.spool.pacing import CommitPacer


def _frame(i: int) -> bytes:
    return frame.encode(orjson.dumps({"i": i}), 1000 + i)


async def _open(root: Path, gather_s: float) -> Spool:
    spool = Spool(root, max_bytes=1 << 30, segment_bytes=1 << 20, gather_s=gather_s)
    spool.open()
    spool.start()
    return spool


def test_the_pacer_waits_only_within_the_interval_after_a_commit_started() -> None:
    pacer = CommitPacer(0.001)
    assert pacer.wait_s(100.0) == 0, "idle from the start"
    pacer.started(100.0)
    assert abs(pacer.wait_s(100.0004) - 0.0006) < 1e-9, "busy: the rest of the interval"
    assert pacer.wait_s(100.001) == 0 and pacer.wait_s(105.0) == 0, "idle again after it"
    assert CommitPacer(0.0).wait_s(100.0) == 0, "0 disables the pacing"


async def test_an_idle_spool_commits_at_once_and_a_busy_one_gathers(tmp_path: Path) -> None:
    """With a 300 ms interval: a lone request is acknowledged well within it; 20 requests arriving one
    every 10 ms right after it wait for the interval's end and share one fdatasync (back to back,
    they would have needed one each)."""
    spool = await _open(tmp_path, gather_s=0.3)
    t0 = time.monotonic()
    await spool.append_frame(_frame(0))
    assert time.monotonic() - t0 < 0.3, "the idle spool committed at once"
    assert spool.commits == 1
    appends = []
    for i in range(1, 21):  # arrivals spaced in time: each would find the previous commit done
        appends.append(asyncio.ensure_future(spool.append_frame(_frame(i))))
        await asyncio.sleep(0.01)
    await asyncio.gather(*appends)
    assert time.monotonic() - t0 >= 0.3, "the busy spool waited for the interval"
    assert spool.commits <= 3, f"{spool.commits} commits for 20 requests arriving within one interval"
    records, _ = spool.read(spool.cursor, max_records=100)
    assert [orjson.loads(r.body)["i"] for r in records] == list(range(21)), "in order, every one"
    await spool.close()


async def test_back_to_back_commits_without_pacing(tmp_path: Path) -> None:
    """The same arrivals with pacing off (``--spool-gather-ms 0``): each finds the spool idle."""
    spool = await _open(tmp_path, gather_s=0.0)
    for i in range(5):
        fut = asyncio.ensure_future(spool.append_frame(_frame(i)))
        await fut
    assert spool.commits == 5
    await spool.close()
