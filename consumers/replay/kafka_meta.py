"""Cluster metadata through the admin client (plumbing.kafka_clients.make_admin): topics and their
partitions, consumer-group state. Metadata is asked for *all* topics, which never auto-creates one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from plumbing.retry import Backoff, retry_call

__all__ = ["GroupInfo", "describe_group", "retrying", "topic_partitions"]

T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], *, timeout_s: float = 30.0) -> T:
    """``call()`` again while it fails with a retriable Kafka error (e.g. the group coordinator is
    still loading on a fresh cluster), for at most ``timeout_s``."""
    return await retry_call(call, retry_if=lambda e: isinstance(e, KafkaError) and bool(e.retriable),
                            backoff=Backoff(0.1, cap=2.0), timeout_s=timeout_s)


_GROUP_ID_NOT_FOUND = 69


async def topic_partitions(admin: AIOKafkaAdminClient) -> dict[str, list[int]]:
    """Every topic the client may see -> its partition ids (sorted)."""
    out: dict[str, list[int]] = {}
    for t in await admin.describe_topics():
        if t.get("error_code", 0) == 0:
            out[t["topic"]] = sorted(p["partition"] for p in t.get("partitions", ()))
    return out


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group: str
    state: str  # Empty, Dead, Stable, PreparingRebalance, CompletingRebalance, ...
    protocol_type: str
    members: tuple[str, ...]  # "member_id (client_id@host)"

    @property
    def inactive(self) -> bool:
        return not self.members and self.state in ("Empty", "Dead")


async def describe_group(admin: AIOKafkaAdminClient, group: str) -> GroupInfo:
    """The group's state and members (a group that does not exist is ``Dead``, no members)."""
    responses = await admin.describe_consumer_groups([group])
    for resp in responses:
        for g in resp.groups:
            error_code, gid, state, protocol_type = g[0], g[1], g[2], g[3]
            members: list[Any] = list(g[5])
            if gid != group:
                continue
            if error_code == _GROUP_ID_NOT_FOUND:
                return GroupInfo(group, "Dead", "", ())
            if error_code:
                from aiokafka.errors import for_code

                raise for_code(error_code)(f"describing consumer group {group}")
            return GroupInfo(
                group,
                state or "Dead",
                protocol_type,
                tuple(f"{m[0]} ({m[1]}@{m[2]})" for m in members),
            )
    return GroupInfo(group, "Dead", "", ())
