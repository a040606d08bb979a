"""Broker failover under webhook load on the 3-node cluster (topics RF 3, min.insync.replicas 2).

The node leading the busiest partition of ``<prefix>.data`` is SIGKILLed while a receiver takes a
steady load, and started again 10 s later. Spool mode: no request may fail, every acknowledged event
is in Kafka in its VIN's order, the spool's depth stays bounded. Broker mode: every acknowledged
event is in Kafka; the 503s (requests waiting on a partition without a leader) are counted and timed.

``pytest -m cluster -s`` prints each run's figures (``CLUSTER FIGURES ...``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from localbroker import LocalCluster
from plumbing.settings import KafkaSettings
from tests.support.cluster_ops import busiest_leader, leader_moved
from tests.support.processes import ReceiverProcess, new_receiver
from tests.support.webhook_load import (
    HealthSampler,
    Sender,
    check_order,
    cpu_seconds,
    duplicates,
    kafka_envelopes,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]

OUTAGE_S = 10.0  # the killed node stays down this long (the cluster fences it after 4 s)
AFTER_S = 3.0  # load goes on this long after the node is back


STEADY_DEPTH = 100  # the forwarder keeps up: no more than this waits in the spool


async def _busiest_once_flowing(
    settings: KafkaSettings, topic: str, sampler: HealthSampler | None
) -> tuple[int, int, dict[int, int]]:
    """The busiest partition's leader once the load has put 300 records in every partition of the
    topic and (spool mode) the forwarder keeps up with it."""
    deadline = time.monotonic() + 90
    while True:
        victim, partition, per_partition = await busiest_leader(settings, topic)
        flowing = len(per_partition) == settings.topic_partitions and sum(per_partition.values()) >= 300
        steady = sampler is None or (bool(sampler.samples) and sampler.samples[-1][1] <= STEADY_DEPTH)
        if victim >= 0 and flowing and steady:
            return victim, partition, per_partition
        assert time.monotonic() < deadline, f"the load does not flow into {topic}: {per_partition}"
        await asyncio.sleep(0.1)  # poll interval


async def _kill_busiest_leader_under_load(
    cluster: LocalCluster, settings: KafkaSettings, rx: ReceiverProcess, sender: Sender, sampler: HealthSampler | None
) -> dict[str, object]:
    """Run the load, kill the busiest partition's leader, restart it; returns the timings."""
    stop, stop_sampling = asyncio.Event(), asyncio.Event()
    forwarder_pid = rx.health()["forwarder"]["pid"] if sampler else None  # type: ignore[index]
    cpu0 = cpu_seconds(rx.proc.pid if rx.proc else None) + cpu_seconds(forwarder_pid)  # type: ignore[arg-type]
    t_start = time.monotonic()
    load = asyncio.ensure_future(sender.run(stop))
    sampling = asyncio.ensure_future(sampler.run(stop_sampling)) if sampler else None
    topic = f"{settings.topic_prefix}.data"
    try:
        victim, partition, per_partition = await _busiest_once_flowing(settings, topic, sampler)
        t_kill = time.monotonic()
        baseline = sampler.max_depth(since=t_kill - 1.0) if sampler else 0  # the last second's steady depth
        await asyncio.to_thread(cluster.node(victim).kill)
        moved_s = await leader_moved(settings, topic, partition, victim)
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_kill)))  # the outage: a duration
        t_restart = time.monotonic()
        await asyncio.to_thread(cluster.node(victim).start)
        restart_s = time.monotonic() - t_restart
        await asyncio.sleep(AFTER_S)  # load goes on with the node back: a duration
    finally:
        stop.set()
        await load
    if sampler is not None:
        await rx.wait_drained()
        stop_sampling.set()
        assert sampling is not None
        await sampling
    load_s = time.monotonic() - t_start
    cpu = cpu_seconds(rx.proc.pid if rx.proc else None) + cpu_seconds(forwarder_pid) - cpu0  # type: ignore[arg-type]
    return {
        "killed_node": victim, "partition": partition, "records_per_partition_at_kill": per_partition,
        "leader_moved_s": moved_s, "node_restart_s": round(restart_s, 1),
        "spool_baseline_depth": baseline, "t_kill": t_kill, "load_s": round(load_s, 1),
        "receiver_cpu_us_per_event": round(cpu / max(len(sender.result.acked), 1) * 1e6, 1),
    }


async def test_spool_mode_rides_out_the_leader_of_the_busiest_partition_killed(
    cluster: LocalCluster, cluster_settings: KafkaSettings, tmp_path: Path
) -> None:
    rx = new_receiver(tmp_path, cluster.bootstrap, cluster_settings.topic_prefix).start()
    sender, sampler = Sender([rx.url]), HealthSampler(rx)
    timing = await _kill_busiest_leader_under_load(cluster, cluster_settings, rx, sender, sampler)
    assert rx.terminate() == 0
    res = sender.result
    envs = await kafka_envelopes(cluster_settings, len(res.acked))
    ids = {e.event_id for e in envs}
    t_kill = float(timing.pop("t_kill"))  # type: ignore[arg-type]
    fig = {
        "sent": res.sent, "acknowledged": len(res.acked), "missing": len(set(res.acked) - ids),
        "duplicates": duplicates(envs), "non_2xx": res.non_2xx_total, "transport_errors": res.transport_errors,
        "max_spool_depth": sampler.max_depth(), "max_spool_depth_after_kill": sampler.max_depth(since=t_kill),
        "recovered_s": sampler.back_to(int(timing["spool_baseline_depth"]), t_kill),  # type: ignore[call-overload]
        "spool_bytes_per_event": round(sampler.bytes_per_event()), "body_bytes": round(sender.mean_body_bytes()),
        "acknowledged_per_s": round(len(res.acked) / float(timing["load_s"])),  # type: ignore[arg-type]
        "slowest_answer_s": sender.slowest(), **timing,
    }
    print(f"\nCLUSTER FIGURES failover_spool: {json.dumps(fig)}")
    assert fig["non_2xx"] == 0 and res.transport_errors == 0, "the sender never noticed the broker's death"
    assert ids == set(res.acked), "exactly the acknowledged events are in Kafka"
    assert check_order(envs, set(res.acked)) == len(res.acked)
    assert fig["recovered_s"] is not None and fig["recovered_s"] <= OUTAGE_S, \
        "the spool was back to its depth before the kill while the node was still down (RF 3: the others took over)"


async def test_broker_mode_counts_the_503s_while_a_partition_has_no_leader(
    cluster: LocalCluster, cluster_settings: KafkaSettings, tmp_path: Path
) -> None:
    rx = new_receiver(tmp_path, cluster.bootstrap, cluster_settings.topic_prefix, "--durability", "broker").start()
    sender = Sender([rx.url])
    timing = await _kill_busiest_leader_under_load(cluster, cluster_settings, rx, sender, None)
    assert rx.terminate() == 0
    res = sender.result
    envs = await kafka_envelopes(cluster_settings, len(res.acked))
    ids = {e.event_id for e in envs}
    t_kill = float(timing.pop("t_kill"))  # type: ignore[arg-type]
    first_refusal = round(sender.refusals[0][0] - t_kill, 2) if sender.refusals else None
    fig = {
        "sent": res.sent, "acknowledged": len(res.acked), "missing": len(set(res.acked) - ids),
        "duplicates": duplicates(envs), "non_2xx": dict(res.non_2xx), "transport_errors": res.transport_errors,
        "refusals_from_s_after_kill": first_refusal, "refusal_window_s": sender.refusal_window_s(),
        "slowest_answer_s": sender.slowest(), "slowest_before_kill_s": sender.slowest_before(t_kill), **timing,
    }
    print(f"\nCLUSTER FIGURES failover_broker: {json.dumps(fig)}")
    assert set(res.acked) <= ids, "every acknowledged event is in Kafka"
    assert set(res.non_2xx) <= {503}, "a partition without a leader is a 503 with Retry-After, nothing else"
    assert res.transport_errors == 0
    assert sender.refusal_window_s() <= OUTAGE_S, "503s only while the partition had no leader"
    assert check_order(envs, set(res.acked)) == len(res.acked)
