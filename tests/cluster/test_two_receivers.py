"""Two receivers, one spool each, no load balancer: the sender alternates between them, and one is
SIGKILLed mid-load. Its requests go to the other while it is down (a connection refused is retried
there); it is started again on its spool, which it forwards. Every acknowledged event is in Kafka;
the only duplicates are the bodies the killed receiver had sent but not yet recorded as forwarded,
which the restarted receiver reports (``spool recovered``, ``pending_events``) and re-sends.

``pytest -m cluster -s`` prints the figures (``CLUSTER FIGURES two_receivers``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import orjson
import pytest

from ingest.settings import IngestSettings
from localbroker import LocalCluster
from plumbing.settings import KafkaSettings
from tests.support.processes import ReceiverProcess, new_receiver
from tests.support.webhook_load import Sender, check_order, duplicates, kafka_envelopes

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]

_DEFAULTS = IngestSettings()
#: docs/operations.md: what a killed receiver can re-send at most (in-flight chunks + one whose cursor write waited)
DUPLICATE_BOUND = (_DEFAULTS.forward_inflight_chunks + 1) * _DEFAULTS.forward_batch_events


def _recovered_pending(rx: ReceiverProcess) -> list[int]:
    """``pending_events`` of every ``spool recovered`` line the receiver logged (one per start)."""
    out = []
    for line in rx.log_path.read_text(errors="replace").splitlines():
        if '"spool recovered"' in line:
            out.append(int(orjson.loads(line)["pending_events"]))
    return out


async def _acked_at_least(sender: Sender, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sender.result.acked) < n:
        assert time.monotonic() < deadline, f"only {len(sender.result.acked)} of {n} acknowledged"
        await asyncio.sleep(0.05)  # poll interval


async def test_two_receivers_one_killed_every_acknowledged_event_reaches_kafka(
    cluster: LocalCluster, cluster_settings: KafkaSettings, tmp_path: Path
) -> None:
    prefix = cluster_settings.topic_prefix
    receivers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        receivers.append(new_receiver(tmp_path / name, cluster.bootstrap, prefix).start())
    a, b = receivers
    sender = Sender([a.url, b.url], pace_s=0.0)
    stop = asyncio.Event()
    load = asyncio.ensure_future(sender.run(stop))
    try:
        await _acked_at_least(sender, 1500)  # both take load
        a.kill()  # mid-flight: requests in progress on it fail, its forwarder stops with it
        t_kill = time.monotonic()
        acked_by_a_before = sum(1 for r in sender.acked_by.values() if r == 0)
        await _acked_at_least(sender, len(sender.result.acked) + 1000)  # b alone takes everything
        down_s = time.monotonic() - t_kill
        await asyncio.to_thread(a.start)  # same spool: recovery, then it forwards what it holds
        await _acked_at_least(sender, len(sender.result.acked) + 500)  # both again
    finally:
        stop.set()
        await load
    for rx in receivers:
        await rx.wait_drained()
        assert rx.terminate() == 0
    res = sender.result
    envs = await kafka_envelopes(cluster_settings, len(res.acked))
    ids = {e.event_id for e in envs}
    recovered = _recovered_pending(a)
    fig = {
        "sent": res.sent, "acknowledged": len(res.acked),
        "acknowledged_by": {"a": sum(1 for r in sender.acked_by.values() if r == 0),
                            "b": sum(1 for r in sender.acked_by.values() if r == 1)},
        "acknowledged_by_a_before_kill": acked_by_a_before, "a_down_s": round(down_s, 1),
        "missing": len(set(res.acked) - ids), "kafka_records": len(envs), "duplicates": duplicates(envs),
        "a_pending_at_restart": recovered[-1], "duplicate_bound": DUPLICATE_BOUND,
        "non_2xx": res.non_2xx_total, "connection_refused_then_sent_to_b": res.transport_errors,
    }
    print(f"\nCLUSTER FIGURES two_receivers: {json.dumps(fig)}")
    assert recovered[0] == 0 and len(recovered) == 2, "a started on an empty spool, then once more after the kill"
    assert fig["non_2xx"] == 0
    assert ids == set(res.acked), "every acknowledged event is in Kafka, and nothing else"
    assert duplicates(envs) <= min(recovered[-1], DUPLICATE_BOUND), "duplicates only from the killed receiver's tail"
    assert check_order(envs, set(res.acked), sender.acked_by) == len(res.acked), "each receiver keeps VIN order"
