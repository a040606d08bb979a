"""Where a cluster's partitions live: each partition's leader, replicas and in-sync replicas, from a
metadata request for every topic (naming one would auto-create it on a broker that allows that), and
waiting until none is under-replicated."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from localbroker.errors import BrokerError
from plumbing.kafka_clients import make_admin
from plumbing.settings import KafkaSettings

__all__ = ["PartitionState", "partition_states", "wait_in_sync"]


@dataclass(frozen=True, slots=True, order=True)
class PartitionState:
    topic: str
    partition: int
    leader: int  # node id; -1 while it has none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return self.leader < 0 or set(self.isr) != set(self.replicas)


async def partition_states(settings: KafkaSettings, topics: list[str] | None = None) -> list[PartitionState]:
    """Every partition of ``topics`` (default: every topic, internal ones included)."""
    admin = make_admin(settings, request_timeout_ms=5000)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    wanted = set(topics) if topics is not None else None
    return sorted(
        PartitionState(t["topic"], p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
        for t in described
        if t.get("error_code", 0) == 0 and (wanted is None or t["topic"] in wanted)
        for p in t.get("partitions", ())
    )


async def wait_in_sync(settings: KafkaSettings, timeout_s: float = 60.0, topics: list[str] | None = None) -> float:
    """Until every partition has a leader and all its replicas in sync (after a node came back);
    returns the seconds it took. Raises ``BrokerError`` with the lagging partitions after ``timeout_s``."""
    t0 = time.monotonic()
    lagging: list[PartitionState] = []
    while time.monotonic() - t0 < timeout_s:
        with contextlib.suppress(Exception):  # a node still starting may refuse the connection
            lagging = [p for p in await partition_states(settings, topics) if p.under_replicated]
            if not lagging:
                return time.monotonic() - t0
        await asyncio.sleep(0.2)  # metadata poll interval
    shown = ", ".join(f"{p.topic}-{p.partition} isr={list(p.isr)} replicas={list(p.replicas)}" for p in lagging[:5])
    raise BrokerError(f"partitions still under-replicated after {timeout_s:.0f}s: {shown}")
