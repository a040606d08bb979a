"""A consumer worker in the real runtime, in the test's event loop.

    async with RunningWorker(CreditsWorker(s), s) as runtime:     # started, partitions assigned
        await wait_until(lambda: handled_total(runtime) == n, "all handled")
    # leaving the block drains: a forced checkpoint and commit

    r = RunningWorker(worker, s).start()    # without waiting for the assignment
    await r.stop()                          # drains; re-raises what ``run`` raised
"""

from __future__ import annotations

import asyncio
from typing import Any

from consumers.runtime import Worker, WorkerRuntime, WorkerSettings
from plumbing.settings import KafkaSettings


def worker_settings(kafka_settings: KafkaSettings, cls: type[WorkerSettings] = WorkerSettings,
                    **fields: Any) -> Any:
    """``cls`` on the test's broker and topic prefix, tuned for tests: small batches, short timeouts
    and back-off, no /metrics server; ``fields`` override."""
    base = kafka_settings.model_dump()
    base.update(batch_timeout_ms=200, batch_size=50, retry_backoff_ms=50, metrics_port=0)
    if "notify_poll_interval_s" in cls.model_fields:
        base["notify_poll_interval_s"] = 0.2
    base.update(fields)
    return cls(**base)


def handled_total(runtime: WorkerRuntime) -> int:
    """Records the runtime has handed to its worker, all partitions together."""
    return sum(runtime.handled.values())


class RunningWorker:
    """``worker`` in a ``WorkerRuntime`` as a task of this event loop."""

    def __init__(self, worker: Worker, settings: WorkerSettings) -> None:
        self.stop_event = asyncio.Event()
        self.runtime = WorkerRuntime(worker, settings, stop=self.stop_event)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> RunningWorker:
        self.task = asyncio.create_task(self.runtime.run())
        return self

    async def assigned(self, timeout: float = 60.0) -> None:
        """Wait for the first partition assignment; fail if the runtime ends (its error re-raised) or
        none comes in ``timeout`` seconds."""
        assert self.task is not None, "start() first"
        waiter = asyncio.ensure_future(self.runtime.assigned_event.wait())
        done, _ = await asyncio.wait({waiter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            waiter.cancel()
            self.task.result()
            raise AssertionError("runtime ended before its assignment")
        if waiter not in done:
            waiter.cancel()
            raise AssertionError(f"no partition assignment within {timeout}s")

    async def stop(self, timeout: float = 60.0) -> None:
        """Ask the runtime to stop (it drains: checkpoint, commit) and wait for it."""
        if self.task is not None:
            self.stop_event.set()
            await asyncio.wait_for(self.task, timeout)

    async def crash(self) -> None:
        """Cancel the runtime without draining: offsets may stay behind the effects (a crash)."""
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        self.task = None

    async def __aenter__(self) -> WorkerRuntime:
        self.start()
        await self.assigned()
        return self.runtime

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
