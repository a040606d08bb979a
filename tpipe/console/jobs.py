"""The console's long actions — a replay's dry run and run, a redrive's dry run and run — as jobs.

A job runs its coroutine in a thread of its own with its own event loop (``asyncio.run``), so reading
and decoding a large range never holds up the pages, and reports through the replay engine's progress
callback (``on_progress(done, total, sent)``): its page draws the bar from ``Job.done``/``total``/``sent``
and refreshes itself while the job runs. A dry run is a job too: it reads every range it counts.

``Job.spec`` is what a follow-up needs (the selection and the target, with a token when one was
typed); it is never rendered. The console keeps the newest ``KEEP`` jobs in memory and runs at most
``MAX_RUNNING`` at once (a restart forgets them; the audit log says who started what).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from plumbing.logs import redact

__all__ = ["Job", "JobBoard", "BusyError"]

log = logging.getLogger("tpipe.console.jobs")
KEEP = 50
MAX_RUNNING = 2
RUNNING, DONE, FAILED = "running", "done", "failed"


class BusyError(Exception):
    """``MAX_RUNNING`` jobs are running already."""


@dataclass
class Job:
    id: str
    kind: str  # "replay dry run", "replay", "redrive dry run", "redrive"
    who: str
    spec: Any = None  # what the job (and a follow-up) runs with; never shown
    state: str = RUNNING
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    done: int = 0
    total: int = 0
    sent: int = 0
    result: Any = None  # the plan the job returned
    error: str | None = None
    followed_by: str | None = None  # the job started from this one (a dry run's run)

    def progress(self, done: int, total: int, sent: int) -> None:
        """The replay engine's progress callback (called from the job's thread)."""
        self.done, self.total, self.sent = done, total, sent

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def percent(self) -> float | None:
        if self.state == DONE:
            return 100.0
        return min(100.0, self.done * 100.0 / self.total) if self.total else None

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.time()) - self.started_at


class JobBoard:
    """The console's jobs, newest last."""

    def __init__(self, keep: int = KEEP, max_running: int = MAX_RUNNING) -> None:
        self.keep = keep
        self.max_running = max_running
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, kind: str, who: str, run: Callable[[Job], Coroutine[Any, Any, Any]], *,
              spec: Any = None) -> Job:
        """A new job running ``run(job)``; ``BusyError`` when ``max_running`` jobs run already."""
        with self._lock:
            return self._start(kind, who, run, spec)

    def follow(self, dry_run: Job, kind: str, who: str, run: Callable[[Job], Coroutine[Any, Any, Any]], *,
               spec: Any = None) -> tuple[str, bool]:
        """The id of the job carrying out the finished ``dry_run``, and whether it starts now: a second
        confirm (a double click, a reload) gets the first one's job, never a second run."""
        with self._lock:
            if dry_run.followed_by is not None:
                return dry_run.followed_by, False
            job = self._start(kind, who, run, spec)
            dry_run.followed_by = job.id
            return job.id, True

    def _start(self, kind: str, who: str, run: Callable[[Job], Coroutine[Any, Any, Any]], spec: Any) -> Job:
        if sum(j.running for j in self._jobs.values()) >= self.max_running:
            raise BusyError(f"{self.max_running} jobs are running; wait for one to finish")
        job = Job(secrets.token_hex(8), kind, who, spec)
        self._jobs[job.id] = job
        while len(self._jobs) > self.keep:
            oldest = next((k for k, j in self._jobs.items() if not j.running), None)
            if oldest is None:
                break
            del self._jobs[oldest]
        threading.Thread(target=self._run, args=(job, run), name=f"console-job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, run: Callable[[Job], Coroutine[Any, Any, Any]]) -> None:
        try:
            job.result = asyncio.run(run(job))
            job.state = DONE
        except Exception as exc:  # the job's page shows why; the console carries on
            job.error = redact(str(exc) or type(exc).__name__)
            job.state = FAILED
            log.warning("console job failed", extra={"job": job.id, "kind": job.kind, "error": job.error})
        finally:
            job.finished_at = time.time()
        if job.state == DONE:
            log.info("console job done", extra={"job": job.id, "kind": job.kind, "sent": job.sent,
                                                "seconds": round(job.seconds, 2)})

    def get(self, job_id: str, *kinds: str) -> Job | None:
        """The job ``job_id`` (when it is of one of ``kinds``, if given)."""
        job = self._jobs.get(job_id)
        return job if job is not None and (not kinds or job.kind in kinds) else None

    def recent(self, *kinds: str) -> list[Job]:
        """The jobs of ``kinds`` (all when none given), newest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in reversed(jobs) if not kinds or j.kind in kinds]
