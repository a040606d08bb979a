"""Fault tests with real processes: broker killed, receiver killed, spool full, SIGTERM under load.

Run alone with ``pytest -m fault -s`` to see the figures each test prints.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from localbroker import LocalBroker
from schemas.envelope import Envelope
from schemas.parse import parse_body
from tests.support.kafka_broker import broker_settings, read_all
from tests.support.processes import TOKEN, LoadResult, event_body, new_receiver, steady_load

pytestmark = [pytest.mark.fault, pytest.mark.kafka]


def _figures(name: str, load: LoadResult, ids_in_kafka: list[str]) -> dict[str, int]:
    counts = collections.Counter(ids_in_kafka)
    fig = {
        "sent": load.sent,
        "acknowledged": len(load.acked),
        "found_in_kafka": len(counts),
        "kafka_records": len(ids_in_kafka),
        "duplicates_in_kafka": sum(c - 1 for c in counts.values()),
        "non_2xx": load.non_2xx_total,
        "transport_errors": load.transport_errors,
    }
    print(f"\nFAULT FIGURES {name}: {json.dumps(fig)}")
    return fig


async def _kafka_ids(bootstrap: str, prefix: str, expected: int) -> list[str]:
    return [e.event_id for e in await _kafka_envelopes(bootstrap, prefix, expected)]


async def _kafka_envelopes(bootstrap: str, prefix: str, expected: int) -> list[Envelope]:
    records = await read_all(broker_settings(bootstrap, prefix), f"{prefix}.data", expected_count=expected, timeout=60)
    return [Envelope.from_json(r.value) for r in records]


def _assert_per_vin_order(envs: list[Envelope]) -> None:
    """Each sender loop posts one VIN's events in Seq order; Kafka must hold them in that order."""
    seen: set[str] = set()
    last: dict[str | None, int] = {}
    for env in envs:  # read_all returns each partition in offset order; one VIN lives in one partition
        if env.event_id in seen:
            continue
        seen.add(env.event_id)
        key = f"{env.vin}/{env.payload['data']['Worker']}"
        seq = env.payload["data"]["Seq"]
        assert seq > last.get(key, -1), f"{key}: Seq {seq} after {last.get(key)}"
        last[key] = seq


async def _load_for(url: str, seconds: float, res: LoadResult, concurrency: int = 4) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(steady_load(url, stop, concurrency=concurrency, result=res))
    await asyncio.sleep(seconds)  # the load runs for this long: duration, not readiness
    stop.set()
    await task


async def test_broker_killed_under_load_no_non_2xx_and_nothing_lost(
    local_broker_factory: Callable[..., LocalBroker], tmp_path: Path, topic_prefix: str
) -> None:
    broker = local_broker_factory()
    await broker.astart()
    rx = new_receiver(tmp_path, broker.bootstrap, topic_prefix).start()
    res = LoadResult()
    stop = asyncio.Event()
    load = asyncio.ensure_future(steady_load(rx.url, stop, result=res))
    try:
        await asyncio.sleep(2)  # steady load with the broker up
        await broker.akill()
        acked_before_outage = len(res.acked)
        await asyncio.sleep(11)  # the outage: at least 10 s with the broker down
        during = rx.health()
        assert during["broker"]["up"] is False  # type: ignore[index]
        assert during["spool"]["pending_events"] > 0, "the backlog lives in the spool"  # type: ignore[index]
        assert httpx.get(rx.url + "/readyz").status_code == 200, "a broker outage must not make the receiver unready"
        await broker.arestart()
        await asyncio.sleep(2)  # load continues after the broker returns
    finally:
        stop.set()
        await load
    assert len(res.acked) > acked_before_outage + 100, "events were acknowledged during the outage"
    await rx.wait_drained()
    assert rx.terminate() == 0
    envs = await _kafka_envelopes(broker.bootstrap, topic_prefix, len(res.acked))
    _assert_per_vin_order(envs)
    ids = [e.event_id for e in envs]
    fig = _figures("broker_sigkill", res, ids)
    assert fig["non_2xx"] == 0 and res.transport_errors == 0
    assert set(ids) == set(res.acked), "the event_ids in Kafka are exactly the acknowledged ones"


async def test_receiver_killed_under_load_every_acknowledged_event_reaches_kafka(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    res = LoadResult()
    stop = asyncio.Event()
    load = asyncio.ensure_future(steady_load(rx.url, stop, result=res, pace_s=0.0))
    await asyncio.sleep(3)  # load runs, then the receiver dies mid-flight
    rx.kill()
    stop.set()
    await load
    rx.start()  # same spool dir: recovery + forwarding of what was not confirmed
    await rx.wait_drained()
    assert rx.terminate() == 0
    ids = await _kafka_ids(kafka_bootstrap, topic_prefix, len(res.acked))
    fig = _figures("receiver_sigkill", res, ids)
    assert fig["acknowledged"] > 100
    assert set(res.acked) <= set(ids), "every acknowledged event_id is in Kafka"


async def test_spool_full_answers_503_with_retry_after_and_recovers(
    local_broker_factory: Callable[..., LocalBroker], tmp_path: Path, topic_prefix: str
) -> None:
    broker = local_broker_factory()
    await broker.astart()
    rx = new_receiver(tmp_path, broker.bootstrap, topic_prefix, "--spool-max-bytes", "60000").start()
    await broker.akill()
    acked: set[str] = set()
    refused: set[str] = set()
    async with httpx.AsyncClient(timeout=30) as client:
        for seq in range(400):
            body = event_body(0, seq)
            r = await client.post(rx.url + "/webhook", content=body, headers={"Authorization": f"Bearer {TOKEN}"})
            eid = parse_body(body, received_at_ms=0)[0].event_id
            if r.status_code == 202:
                acked.add(eid)
            else:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"].isdigit() and r.json()["error"] == "spool_full"
                refused.add(eid)
        ready = await client.get(rx.url + "/readyz")
        assert ready.status_code == 503 and ready.json()["spool"]["writable"] is False
        await broker.arestart()
        await rx.wait_drained()
        r = await client.post(rx.url + "/webhook", content=event_body(1, 0), headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 202, "accepts again once the spool drained"
        acked.add(parse_body(event_body(1, 0), received_at_ms=0)[0].event_id)
        assert (await client.get(rx.url + "/readyz")).status_code == 200
    await rx.wait_drained()
    assert rx.terminate() == 0
    assert acked and refused, (len(acked), len(refused))
    ids = set(await _kafka_ids(broker.bootstrap, topic_prefix, len(acked)))
    print(f"\nFAULT FIGURES spool_full: acknowledged={len(acked)} refused_503={len(refused)} in_kafka={len(ids)}")
    assert ids == acked, "exactly the acknowledged events reach Kafka; no 503'd event was stored"


async def test_sigterm_under_load_completes_requests_drains_and_exits_zero(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--drain-timeout-s", "20").start()
    res = LoadResult()
    stop = asyncio.Event()
    load = asyncio.ensure_future(steady_load(rx.url, stop, result=res, pace_s=0.0))
    await asyncio.sleep(2)  # load, then SIGTERM while requests are in flight
    assert rx.proc is not None
    loop = asyncio.get_running_loop()
    rc = await loop.run_in_executor(None, rx.terminate, 30.0)
    stop.set()
    await load
    assert rc == 0
    ids = await _kafka_ids(kafka_bootstrap, topic_prefix, len(res.acked))
    fig = _figures("receiver_sigterm", res, ids)
    assert fig["non_2xx"] == 0, "in-flight requests completed instead of failing"
    assert set(res.acked) <= set(ids), "everything acknowledged was drained to Kafka before exit"
    assert "shutdown: spool drain" in rx.log_tail(200)


async def test_corrupt_spool_tail_keeps_the_valid_prefix_and_reports_the_moved_bytes(
    local_broker_factory: Callable[..., LocalBroker], tmp_path: Path, topic_prefix: str
) -> None:
    broker = local_broker_factory()
    await broker.astart()
    await broker.astop()  # Kafka down: what is acknowledged stays in the spool
    rx = new_receiver(tmp_path, broker.bootstrap, topic_prefix).start()
    acked: set[str] = set()
    async with httpx.AsyncClient(timeout=30) as client:
        for seq in range(50):
            r = await client.post(rx.url + "/webhook", content=event_body(3, seq),
                                  headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 202
            acked.add(parse_body(event_body(3, seq), received_at_ms=0)[0].event_id)
    rx.kill()  # crash, then damage the tail as a torn write would
    segments = sorted((tmp_path / "spool").glob("*.seg"), key=lambda p: p.stat().st_size)
    damaged = segments[-1]
    garbage = b"TPS1\x00\x10\x00\x00" + b"\xde\xad" * 40
    with open(damaged, "ab") as fh:
        fh.write(garbage)
    await broker.arestart()
    rx.start()
    health = await rx.wait_drained()
    assert health["spool"]["damaged_bytes_recovered"] == len(garbage)  # type: ignore[index]
    report = (tmp_path / "spool" / "corrupt" / "report.jsonl").read_text().splitlines()
    assert len(report) == 1 and json.loads(report[0])["bytes"] == len(garbage)
    moved = tmp_path / "spool" / "corrupt" / json.loads(report[0])["saved_to"]
    assert moved.read_bytes() == garbage, "the bad bytes are moved aside, not dropped"
    assert "spool damage moved aside" in rx.log_tail(200)
    assert rx.terminate() == 0
    ids = await _kafka_ids(broker.bootstrap, topic_prefix, len(acked))
    print(f"\nFAULT FIGURES corrupt_tail: acknowledged={len(acked)} in_kafka={len(set(ids))} "
          f"duplicates={len(ids) - len(set(ids))} moved_bytes={len(garbage)}")
    assert set(ids) == acked, "the valid prefix (every acknowledged event) is forwarded"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


async def test_killed_forwarder_process_is_restarted_and_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    first = rx.health()["forwarder"]
    assert first["mode"] == "process" and first["restarts"] == 0  # type: ignore[index]
    res = LoadResult()
    stop = asyncio.Event()
    load = asyncio.ensure_future(steady_load(rx.url, stop, result=res))
    while len(res.acked) < 200:  # load is flowing before the kill
        await asyncio.sleep(0.05)
    os.kill(first["pid"], signal.SIGKILL)  # type: ignore[index]
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # the receiver notices and starts a new forwarder
        fw = rx.health()["forwarder"]
        if fw["restarts"] == 1 and fw["pid"] not in (None, first["pid"]):  # type: ignore[index]
            break
        assert asyncio.get_running_loop().time() < deadline, fw
        await asyncio.sleep(0.1)
    count_at_restart = len(res.acked)
    while len(res.acked) < count_at_restart + 200:  # and keeps accepting and forwarding
        await asyncio.sleep(0.05)
    stop.set()
    await load
    await rx.wait_drained()
    assert rx.terminate() == 0
    ids = await _kafka_ids(kafka_bootstrap, topic_prefix, len(res.acked))
    fig = _figures("forwarder_sigkill", res, ids)
    assert fig["non_2xx"] == 0, "the sender never noticed"
    assert set(res.acked) <= set(ids), "every acknowledged event_id is in Kafka"


async def test_receiver_sigkill_leaves_no_forwarder_process_behind(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    pid = rx.health()["forwarder"]["pid"]  # type: ignore[index]
    assert isinstance(pid, int) and _alive(pid)
    rx.kill()
    deadline = asyncio.get_running_loop().time() + 20  # the child exits on EOF (after <= 10 s of a stuck publish)
    while _alive(pid):
        assert asyncio.get_running_loop().time() < deadline, "the forwarder process outlived its receiver"
        await asyncio.sleep(0.1)
