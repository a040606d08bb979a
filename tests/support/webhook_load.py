"""Webhook load against one or more receivers, and what to measure while it runs.

``Sender`` posts unique ``data`` events (``processes.event_body``) from ``concurrency`` loops, each
loop one sequence of VINs in order, spreading its requests over the receivers in turn (no load
balancer: the test alternates). A request that cannot reach a receiver (connection refused: it was
SIGKILLed) is sent to the next one, as a sender's retry would. It records which receiver
acknowledged each event and when each non-2xx came.

``HealthSampler`` polls a receiver's ``/healthz`` (spool depth and bytes); ``cpu_seconds`` reads a
process's CPU time from ``/proc``. ``kafka_envelopes`` reads the data topic back, ``check_order``
asserts each VIN's order in Kafka, ``duplicates`` counts repeated ``event_id``s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.parse import parse_body
from tests.support.kafka_broker import read_all
from tests.support.processes import TOKEN, LoadResult, ReceiverProcess, event_body

_AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Sender:
    urls: list[str]
    concurrency: int = 4
    pace_s: float = 0.002
    result: LoadResult = field(default_factory=LoadResult)
    acked_by: dict[str, int] = field(default_factory=dict)  # event_id -> index of the receiver that took it
    refusals: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, status) of each non-2xx
    ack_times: list[float] = field(default_factory=list)  # monotonic time of each 2xx
    body_bytes: int = 0  # of every request sent
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (monotonic time sent, seconds) per answer

    async def run(self, stop: asyncio.Event) -> LoadResult:
        await asyncio.gather(*(self._loop(w, stop) for w in range(self.concurrency)))
        return self.result

    def acked_since(self, t: float) -> int:
        return sum(1 for ts in self.ack_times if ts >= t)

    async def _loop(self, worker: int, stop: asyncio.Event) -> None:
        res = self.result
        seq = 0
        async with httpx.AsyncClient(timeout=30) as client:
            while not stop.is_set():
                body = event_body(worker, seq)
                self.body_bytes += len(body)
                target = (worker + seq) % len(self.urls)
                seq += 1
                res.sent += 1
                for attempt in range(len(self.urls)):
                    idx = (target + attempt) % len(self.urls)
                    sent_at = time.monotonic()
                    try:
                        r = await client.post(self.urls[idx] + "/webhook", content=body, headers=_AUTH)
                    except httpx.TransportError:
                        res.transport_errors += 1
                        continue  # that receiver is down: the next one
                    now = time.monotonic()
                    self.latencies.append((sent_at, now - sent_at))
                    if 200 <= r.status_code < 300:
                        for env in parse_body(body, received_at_ms=0):
                            res.acked[env.event_id] = res.acked.get(env.event_id, 0) + 1
                            self.acked_by[env.event_id] = idx
                        self.ack_times.append(now)
                    else:
                        res.non_2xx[r.status_code] = res.non_2xx.get(r.status_code, 0) + 1
                        self.refusals.append((now, r.status_code))
                    break
                else:
                    await asyncio.sleep(0.05)  # every receiver down: back off like a real sender
                await asyncio.sleep(self.pace_s)  # a steady, not flat-out, sender

    def mean_body_bytes(self) -> float:
        return self.body_bytes / max(self.result.sent, 1)

    def slowest(self, since: float = 0.0) -> float:
        """The longest a request sent at or after ``since`` waited for its answer (seconds)."""
        return round(max((d for t, d in self.latencies if t >= since), default=0.0), 2)

    def slowest_before(self, until: float) -> float:
        return round(max((d for t, d in self.latencies if t < until), default=0.0), 2)

    def refusal_window_s(self) -> float:
        """Seconds from the first non-2xx to the last (0 without any)."""
        if not self.refusals:
            return 0.0
        return round(self.refusals[-1][0] - self.refusals[0][0], 2)


@dataclass
class HealthSampler:
    """``/healthz`` of a receiver every ``interval_s``: (monotonic time, spool pending events, spool bytes)."""

    rx: ReceiverProcess
    interval_s: float = 0.1
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    spool = (await client.get(self.rx.ops_url + "/healthz")).json()["spool"]
                    self.samples.append((time.monotonic(), int(spool["pending_events"]), int(spool["pending_bytes"])))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)

    def max_depth(self, since: float = 0.0) -> int:
        return max((d for t, d, _ in self.samples if t >= since), default=0)

    def bytes_per_event(self) -> float:
        """Spool bytes per pending event at the deepest sample (segments hold bodies as received)."""
        t, depth, size = max(self.samples, key=lambda s: s[1], default=(0.0, 0, 0))
        return size / depth if depth else 0.0

    def back_to(self, baseline: int, after: float) -> float | None:
        """Seconds from ``after`` until the depth was at or below ``baseline`` for good (None: never)."""
        later = [(t, d) for t, d, _ in self.samples if t >= after]
        above = [t for t, d in later if d > baseline]
        if not above:
            return 0.0
        settled = [t for t, d in later if t > above[-1] and d <= baseline]
        return round(settled[0] - after, 2) if settled else None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def kafka_envelopes(settings: KafkaSettings, expected: int, timeout: float = 90.0) -> list[Envelope]:
    """Every record of ``<prefix>.data``, each partition in offset order."""
    records = await read_all(settings, f"{settings.topic_prefix}.data", expected_count=expected, timeout=timeout)
    return [Envelope.from_json(r.value) for r in records]


def duplicates(envs: list[Envelope]) -> int:
    return sum(c - 1 for c in collections.Counter(e.event_id for e in envs).values())


def check_order(envs: list[Envelope], only: set[str], group: dict[str, int] | None = None) -> int:
    """Assert each sender loop's VIN order among the events in ``only`` (first copies): Kafka holds
    them in the order they were posted (per receiver when ``group`` maps an event to its receiver).
    Returns how many were checked."""
    seen: set[str] = set()
    last: dict[tuple[object, ...], int] = {}
    for env in envs:  # each partition in offset order; one VIN lives in one partition
        if env.event_id in seen or env.event_id not in only:
            continue
        seen.add(env.event_id)
        data = env.payload["data"]
        key = (env.vin, data["Worker"], group.get(env.event_id) if group else None)
        assert data["Seq"] > last.get(key, -1), f"{key}: Seq {data['Seq']} after {last.get(key)}"
        last[key] = data["Seq"]
    return len(seen)
