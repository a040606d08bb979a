"""Real ``tpipe consume <worker>`` processes sharing one consumer group, the churn the cluster tests
put them through, and a paced producer of envelopes (with redeliveries) running meanwhile.

    start = worker_starter(tmp_path, "telemetry", settings, "--catalog-uri", uri, ...)
    survivors, churn = await churn_group(start, lambda hurry: produce_paced(settings, envs, 200, hurry))
    # 2 workers; once they share the partitions the stream starts; one is SIGKILLed and back, a 3rd
    # joins and leaves, all while the stream flows; then the rest of it is sent at once.
    # churn.produced is what the stream sent

Workers run with ``TPIPE_*`` variables removed from their environment (only the flags count).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from plumbing.kafka_clients import make_producer
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.topics import headers_for, key_for, topic_for


@dataclass
class WorkerProcess:
    name: str
    cmd: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def log_lines(self, msg: str) -> list[dict[str, object]]:
        """The JSON log lines whose ``msg`` is ``msg``."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if f'"msg":"{msg}"' in line:
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        return out

    def owns_partitions(self) -> bool:
        """Its latest assignment holds at least one partition."""
        assigned = self.log_lines("partitions assigned")
        return bool(assigned and assigned[-1].get("partitions"))

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def worker_starter(tmp: Path, worker: str, settings: KafkaSettings, *flags: str) -> Callable[[str], WorkerProcess]:
    """``start(name)`` runs one more ``tpipe consume <worker>`` of the group (log ``<tmp>/<name>.log``)."""

    def start(name: str) -> WorkerProcess:
        cmd = [
            sys.executable, "-m", "tpipe.cli", "consume", worker, "--kafka", settings.kafka,
            "--topic-prefix", settings.topic_prefix, "--metrics-port", "0", "--batch-timeout-ms", "200", *flags,
        ]
        return WorkerProcess(name, cmd, tmp / f"{name}.log").start()

    return start


async def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 120.0,
                   workers: Sequence[WorkerProcess] = ()) -> float:
    """Poll ``cond`` until true; fails early if one of ``workers`` died. Returns the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        for w in workers:
            if w.proc is not None and w.proc.poll() is not None:
                raise AssertionError(f"{w.name} exited {w.proc.returncode} while waiting for {what}:\n{w.tail()}")
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.2)  # poll interval
    return round(time.monotonic() - t0, 1)


@dataclass
class Churn:
    """What happened to the group, for the figures."""

    timeline: list[tuple[float, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    produced: int = 0

    def note(self, what: str) -> None:
        self.timeline.append((round(time.monotonic() - self.t0, 1), what))


async def churn_group(
    start: Callable[[str], WorkerProcess], stream: Callable[[asyncio.Event], Awaitable[int]], share_s: float = 3.0
) -> tuple[list[WorkerProcess], Churn]:
    """Two workers share the group, then ``stream(hurry)`` starts producing; meanwhile the first
    worker is SIGKILLed and started again, a third joins and leaves (SIGTERM, exit 0). Then ``hurry``
    is set (the stream sends the rest at once; it must still be running: asserted) and the stream
    awaited. Returns the two workers still running and the timeline."""
    churn = Churn()
    w1, w2 = start("w1"), start("w2")
    await wait_for(lambda: w1.owns_partitions() and w2.owns_partitions(), "w1 and w2 to share the partitions",
                   workers=[w1, w2])
    churn.note("w1 and w2 share the partitions; the stream starts")
    hurry = asyncio.Event()
    producing = asyncio.ensure_future(stream(hurry))
    await asyncio.sleep(share_s)  # they consume side by side for a while: a duration
    w1.kill()
    churn.note("w1 SIGKILLed")
    await asyncio.sleep(1.0)  # it stays dead a moment, mid-stream: a duration
    w1 = start("w1-again")
    await wait_for(w1.owns_partitions, "w1 back in the group", workers=[w1, w2])
    churn.note("w1 restarted and assigned")
    w3 = start("w3")
    await wait_for(w3.owns_partitions, "w3 to get partitions", workers=[w1, w2, w3])
    churn.note("w3 joined and assigned")
    await asyncio.sleep(share_s)  # three consume side by side: a duration
    before = len(w2.log_lines("partitions assigned"))
    rc = await asyncio.to_thread(w3.terminate)
    assert rc == 0, f"w3 did not leave cleanly ({rc}):\n{w3.tail()}"
    churn.note("w3 left (SIGTERM, exit 0)")
    await wait_for(lambda: len(w2.log_lines("partitions assigned")) > before, "w2 reassigned after w3 left",
                   workers=[w1, w2])
    churn.note("partitions back with w1 and w2")
    assert not producing.done(), "the stream ended before the churn did: make it longer"
    hurry.set()
    churn.produced = await producing
    churn.note("stream produced")
    return [w1, w2], churn


async def produce_paced(settings: KafkaSettings, envs: Sequence[Envelope], rate: float, hurry: asyncio.Event) -> int:
    """Publish like the forwarder (topic per type, key, headers, timestamp = created_at) at about
    ``rate`` records per second in batches, the rest as fast as it goes once ``hurry`` is set;
    returns how many were sent."""
    producer = make_producer(settings, role="test-paced")
    await producer.start()
    sent = 0
    t0 = time.monotonic()
    try:
        for i in range(0, len(envs), 50):
            futs = [
                await producer.send(topic_for(e.type, settings.topic_prefix), value=e.to_json(), key=key_for(e),
                                    headers=headers_for(e), timestamp_ms=e.created_at_ms)
                for e in envs[i:i + 50]
            ]
            await asyncio.gather(*futs)
            sent += len(futs)
            ahead = t0 + sent / rate - time.monotonic()
            if ahead > 0 and not hurry.is_set():
                with contextlib.suppress(TimeoutError):  # pacing: the stream's rate, not a readiness wait
                    await asyncio.wait_for(hurry.wait(), ahead)
    finally:
        await producer.stop()
    return sent
