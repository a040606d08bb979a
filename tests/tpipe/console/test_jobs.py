"""The console's jobs: a coroutine in a thread of its own, its progress visible while it runs, its
result or its error (secrets redacted) kept, at most ``max_running`` at once, the newest ``keep`` kept."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from plumbing.logs import register_secret
from tpipe.console.jobs import BusyError, Job, JobBoard


def _wait(job: Job) -> None:
    deadline = time.monotonic() + 10
    while job.running:
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.01)  # poll interval


def test_a_job_reports_progress_while_it_runs_then_its_result() -> None:
    board = JobBoard()
    step, seen = threading.Event(), threading.Event()

    async def run(job: Job) -> str:
        job.progress(3, 10, 2)
        seen.set()
        await asyncio.to_thread(step.wait, 10)
        job.progress(10, 10, 7)
        return "the plan"

    job = board.start("replay", "admin", run, spec={"target": "x"})
    assert seen.wait(10)
    assert (job.running, job.done, job.total, job.sent, job.percent) == (True, 3, 10, 2, 30.0)
    step.set()
    _wait(job)
    assert (job.state, job.result, job.percent, job.error) == ("done", "the plan", 100.0, None)
    assert job.finished_at is not None and job.seconds >= 0
    assert board.get(job.id) is job and board.recent("replay") == [job] and board.recent("redrive") == []


def test_a_failed_job_keeps_its_reason_without_secrets() -> None:
    register_secret("s3cret-token-value")

    async def run(job: Job) -> None:
        raise RuntimeError("POST http://rx/webhook with s3cret-token-value answered 401")

    job = JobBoard().start("replay", "admin", run)
    _wait(job)
    assert job.state == "failed" and job.error == "POST http://rx/webhook with *** answered 401"
    assert job.percent is None


def test_at_most_max_running_and_the_newest_kept() -> None:
    board = JobBoard(keep=3, max_running=2)
    release = threading.Event()

    async def slow(job: Job) -> None:
        await asyncio.to_thread(release.wait, 10)

    async def quick(job: Job) -> None:
        return None

    a, b = board.start("replay", "u", slow), board.start("replay", "u", slow)
    with pytest.raises(BusyError, match="2 jobs are running"):
        board.start("replay", "u", quick)
    release.set()
    _wait(a)
    _wait(b)
    done = [board.start("replay", "u", quick) for _ in range(3)]
    for j in done:
        _wait(j)
    assert [j.id for j in board.recent()] == [j.id for j in reversed(done)]
    assert board.get(a.id) is None


def test_a_dry_run_is_carried_out_once_however_often_it_is_confirmed() -> None:
    board = JobBoard()

    async def quick(job: Job) -> str:
        return "plan"

    dry = board.start("redrive dry run", "u", quick)
    _wait(dry)
    first, started = board.follow(dry, "redrive", "u", quick)
    again, started_again = board.follow(dry, "redrive", "u", quick)
    assert (started, started_again, again) == (True, False, first)
    assert [j.kind for j in board.recent()] == ["redrive", "redrive dry run"]
    assert board.get(first, "redrive") is not None and board.get(first, "replay") is None
