"""Health tells the truth while forwarding is stuck (issue 13), against a real broker and a real
``tpipe serve`` process.

The stall is provoked with a refusal that is the cluster's, not the record's: a broker that enforces
ACLs gets a DENY WRITE ACL on the data topic (an operator's mistake, a revoked grant), so Kafka
answers every produce with TOPIC_AUTHORIZATION_FAILED. Kafka is reachable, nothing can be
forwarded, and skipping would lose the events: the forwarder keeps them, in order, and says so.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from localbroker import LocalBroker
from schemas.dlq import DLQ_ERROR, DLQ_ERROR_TYPE
from schemas.envelope import Envelope
from tests.support.kafka_broker import (
    ACL_BROKER_OVERRIDES,
    allow_writes_again,
    broker_settings,
    deny_writes,
    read_all,
    read_until_quiet,
)
from tests.support.processes import TOKEN, ReceiverProcess, new_receiver
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.fault]

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _body(vin: str, seq: int) -> bytes:
    return orjson.dumps({"createdAt": f"2025-06-01T12:00:{seq:02d}.000Z", "vin": vin, "data": {"Seq": seq}})


def _ready(rx: ReceiverProcess) -> tuple[int, dict[str, object]]:
    r = httpx.get(rx.url + "/readyz", timeout=5)
    return r.status_code, r.json()


@pytest.fixture(scope="module")
def acl_bootstrap() -> Iterator[str]:
    broker = LocalBroker(overrides=ACL_BROKER_OVERRIDES)
    try:
        broker.start()
        yield broker.bootstrap
    finally:
        broker.cleanup()


async def _stuck_topic(kafka_bootstrap: str, prefix: str) -> None:
    await deny_writes(broker_settings(kafka_bootstrap, prefix), f"{prefix}.data")


async def _unstick(kafka_bootstrap: str, prefix: str) -> None:
    await allow_writes_again(broker_settings(kafka_bootstrap, prefix), f"{prefix}.data")


async def test_a_refusal_kafka_keeps_making_marks_the_receiver_stalled_until_it_clears(
    acl_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    kafka_bootstrap = acl_bootstrap
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    await _stuck_topic(kafka_bootstrap, topic_prefix)
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--stall-after-s", "3").start()
    try:
        assert httpx.post(rx.url + "/webhook", content=_body("VSTALL00000000001", 1), headers=AUTH).status_code == 202
        assert _ready(rx)[0] == 200, "not stalled yet"
        t0 = time.monotonic()
        await wait_until(lambda: _ready(rx)[0] == 503, "the receiver not ready (stalled)")
        waited = round(time.monotonic() - t0, 3)
        status, body = _ready(rx)
        fw = body["forwarder"]
        assert fw["stalled"] is True  # type: ignore[index]
        stall = fw["stall"]  # type: ignore[index]
        assert "while Kafka was reachable" in stall["reason"] and "TopicAuthorizationFailed" in stall["reason"]
        assert stall["spool_position"] == [0, 0] and stall["stuck_body_age_s"] >= 3
        assert body["broker"]["reachable"] is True  # type: ignore[index]
        assert "127.0.0.1" not in str(body)
        assert httpx.get(rx.url + "/healthz").status_code == 200, "alive: liveness must not restart it"
        assert rx.metric("tpipe_forwarder_stalled") == 1
        # an accepted body is still accepted while stalled (the spool has room)
        assert httpx.post(rx.url + "/webhook", content=_body("VSTALL00000000001", 2), headers=AUTH).status_code == 202
        await _unstick(kafka_bootstrap, topic_prefix)
        t0 = time.monotonic()
        await wait_until(lambda: _ready(rx)[0] == 200, "the receiver ready again")
        cleared = round(time.monotonic() - t0, 3)
        assert rx.metric("tpipe_forwarder_stalled") == 0
        recs = await read_until_quiet(settings, f"{topic_prefix}.data", min_count=2)
        assert [Envelope.from_json(r.value).payload["data"]["Seq"] for r in recs] == [1, 2], "once each, in order"
        print(f"\nSTALL FIGURES topic_authorization_failed: not ready after {waited} s (bound 3 s), "
              f"ready again {cleared} s after the topic was fixed")
    finally:
        rx.terminate()


async def test_repeated_forwarder_deaths_at_one_position_stall_then_quarantine_the_body(
    acl_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """The forwarder process is SIGKILLed (as the OOM killer would) every time it works on the same
    body: restarts are counted, the receiver is not ready after 3 deaths, and after 4 the body goes
    to the DLQ as received and forwarding goes on."""
    kafka_bootstrap = acl_bootstrap
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    await _stuck_topic(kafka_bootstrap, topic_prefix)  # the body cannot leave the spool by itself
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--forwarder-quarantine-after", "4",
                      "--stall-after-s", "600").start()
    try:
        body = _body("VDEATH00000000001", 1)
        assert httpx.post(rx.url + "/webhook", content=body, headers=AUTH).status_code == 202
        for death in range(1, 4):
            pid = rx.health()["forwarder"]["pid"]  # type: ignore[index]
            os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
            await wait_until(lambda d=death, p=pid: rx.health()["forwarder"]["restarts"] == d  # type: ignore[index,misc]
                             and rx.health()["forwarder"]["pid"] not in (None, p),  # type: ignore[index]
                             f"forwarder restart {death}")
        status, ready = _ready(rx)
        assert status == 503
        stall = ready["forwarder"]["stall"]  # type: ignore[index]
        assert "died 3 times at this spool position" in stall["reason"] and "-9" in stall["reason"]
        assert stall["spool_position"] == [0, 0]
        assert rx.metric("tpipe_forwarder_restarts_total") == 3
        assert rx.metric("tpipe_forwarder_stalled") == 1
        # the 4th death: the next forwarder sends the body to the DLQ as received, and goes on
        os.kill(rx.health()["forwarder"]["pid"], signal.SIGKILL)  # type: ignore[arg-type,index]
        (dead,) = await read_until_quiet(settings, f"{topic_prefix}.dlq", min_count=1, timeout=60)
        h = dict(dead.headers)
        assert dead.value == body and h[DLQ_ERROR_TYPE] == b"ForwarderCrash"
        assert b"died 4 times" in h[DLQ_ERROR]
        await _unstick(kafka_bootstrap, topic_prefix)
        assert httpx.post(rx.url + "/webhook", content=_body("VDEATH00000000001", 2), headers=AUTH).status_code == 202
        (rec,) = await read_all(settings, f"{topic_prefix}.data", expected_count=1)
        assert Envelope.from_json(rec.value).payload["data"]["Seq"] == 2, "the quarantined body is not published"
        await wait_until(lambda: _ready(rx)[0] == 200, "the receiver ready again")
        assert rx.metric("tpipe_forward_dead_letters_total{reason=\"forwarder_crash\"}") == 1
    finally:
        rx.terminate()


async def test_forwarding_that_ends_by_itself_exits_non_zero_and_is_restarted(
    acl_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    """The spool segment under the cursor disappears (a disk or operator accident): the forwarder
    cannot read it, logs why, exits non-zero; the receiver restarts it and counts it."""
    kafka_bootstrap = acl_bootstrap
    await _stuck_topic(kafka_bootstrap, topic_prefix)
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix, "--forwarder-quarantine-after", "0").start()
    try:
        assert httpx.post(rx.url + "/webhook", content=_body("VGONE000000000001", 1), headers=AUTH).status_code == 202
        for seg in (tmp_path / "spool").glob("*.seg"):
            seg.unlink()
        pid = rx.health()["forwarder"]["pid"]  # type: ignore[index]
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]  # the next one must read the (missing) segment
        await wait_until(lambda: rx.health()["forwarder"]["restarts"] >= 3, "3 forwarder restarts")  # type: ignore[index,operator]
        log = rx.log_path.read_text()
        assert "forwarding stopped unexpectedly" in log and "FileNotFoundError" in log
        assert "exited with code 70" in log
        status, ready = _ready(rx)
        assert status == 503 and ready["forwarder"]["stalled"] is True  # type: ignore[index]
    finally:
        rx.kill()
