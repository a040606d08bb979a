"""5,000 webhook bodies under load, 1 % of them poison of mixed kinds interleaved with the good ones
(issue 13): every acknowledged event is in Kafka or the DLQ, each VIN's good events keep their
order, nothing is answered 5xx, nothing is published twice, and the spool drains to zero.

Run alone with ``pytest -m fault tests/test_poison_load.py -s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from schemas.dlq import DLQ_ERROR_TYPE
from schemas.envelope import Envelope
from schemas.parse import parse_body
from tests.support.events import iso
from tests.support.kafka_broker import broker_settings, create_topic, read_until_quiet
from tests.support.processes import TOKEN, new_receiver

pytestmark = [pytest.mark.fault, pytest.mark.kafka]

BODIES = 5000
SENDERS = 4
POISON_EVERY = 100  # 1 %
KINDS = ("clock_ahead", "too_large", "too_deep", "duplicates", "too_many_events")


BASE = datetime(2025, 6, 1, tzinfo=UTC)


def _event(vin: str, seq: int, **extra: object) -> dict[str, object]:
    return {"createdAt": iso(BASE + timedelta(milliseconds=seq)), "vin": vin,
            "data": {"Seq": seq, "BatteryLevel": seq % 100, **extra}}


def _body(sender: int, n: int) -> tuple[str, bytes]:
    """The n-th body of a sender: (kind, body). Each sender owns 3 VINs; Seq grows per sender."""
    vin = f"5YJPOISON{sender:02d}{n % 3:06d}"
    seq = n
    if n % POISON_EVERY != 37:
        return "good", orjson.dumps(_event(vin, seq))
    kind = KINDS[(n // POISON_EVERY + sender) % len(KINDS)]
    if kind == "clock_ahead":
        ev = _event(vin, seq)
        ev["createdAt"] = iso(datetime.now(UTC) + timedelta(hours=3, milliseconds=seq))
        return kind, orjson.dumps(ev)
    if kind == "too_large":
        return kind, orjson.dumps(_event(vin, seq, Blob=os.urandom(40_000).hex()))
    if kind == "too_deep":
        return kind, orjson.dumps(_event(vin, seq))[:-2] + b',"Deep":' + b"[" * 100 + b"]" * 100 + b"}}"
    if kind == "duplicates":
        ev = _event(vin, seq)
        return kind, orjson.dumps([ev, ev, ev])
    return kind, orjson.dumps([_event(vin, seq, Copy=i) for i in range(2000)])


async def test_five_thousand_bodies_with_one_percent_mixed_poison(
    kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> None:
    settings = broker_settings(kafka_bootstrap, topic_prefix)
    data_topic = f"{topic_prefix}.data"
    # an operator-made topic: Kafka 4's 1 h bound on future timestamps, and room for 30 kB records only
    await create_topic(settings, data_topic, {"message.timestamp.after.max.ms": "3600000",
                                              "max.message.bytes": "30000"})
    rx = new_receiver(tmp_path, kafka_bootstrap, topic_prefix).start()
    statuses: collections.Counter[int] = collections.Counter()
    by_kind: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    acked: dict[str, tuple[str, str, int]] = {}  # event_id -> (kind, vin, seq)

    async def sender(i: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for n in range(BODIES // SENDERS):
                kind, body = _body(i, n)
                r = await client.post(rx.url + "/webhook", content=body, headers={"Authorization": f"Bearer {TOKEN}"})
                statuses[r.status_code] += 1
                by_kind[kind][r.status_code] += 1
                if r.status_code == 202:
                    for env in parse_body(body, received_at_ms=0):
                        acked[env.event_id] = (kind, env.vin or "", env.payload["data"]["Seq"])

    try:
        await asyncio.gather(*(sender(i) for i in range(SENDERS)))
        drained = await rx.wait_drained(timeout=120)
        assert drained["spool"]["pending_events"] == 0  # type: ignore[index]
        good_and_ahead = [i for i, (k, _, _) in acked.items() if k != "too_large"]
        data = await read_until_quiet(settings, data_topic, min_count=len(good_and_ahead), timeout=60)
        large = [i for i, (k, _, _) in acked.items() if k == "too_large"]
        dlq = await read_until_quiet(settings, f"{topic_prefix}.dlq", min_count=len(large), timeout=60)
    finally:
        rx.terminate()

    envs = [Envelope.from_json(r.value) for r in data]
    ids = collections.Counter(e.event_id for e in envs)
    dlq_ids = collections.Counter(Envelope.from_json(r.value).event_id for r in dlq)
    assert sum(n for s, n in statuses.items() if s >= 500) == 0, statuses
    assert set(ids) | set(dlq_ids) == set(acked), "every acknowledged event is in its topic or the DLQ"
    assert set(dlq_ids) == set(large), "the DLQ holds exactly the records too large for their topic"
    assert all(dict(r.headers)[DLQ_ERROR_TYPE] == b"RecordTooLarge" for r in dlq), "known before Kafka is asked"
    assert max(ids.values()) == 1 and max(dlq_ids.values()) == 1, "nothing published twice"
    last: dict[str, int] = {}
    for rec, env in zip(data, envs, strict=True):  # read_all: each partition in offset order
        seq = env.payload["data"]["Seq"]
        assert seq > last.get(env.vin or "", -1), f"{env.vin}: Seq {seq} after {last.get(env.vin or '')}"
        last[env.vin or ""] = seq
        if acked[env.event_id][0] == "clock_ahead":
            assert dict(rec.headers)["timestamp_source"] == b"received_at"
    assert by_kind["too_deep"] == {400: by_kind["too_deep"].total()}
    assert by_kind["too_many_events"] == {413: by_kind["too_many_events"].total()}
    figures = {"bodies": sum(statuses.values()), "statuses": dict(statuses),
               "poison": {k: dict(v) for k, v in by_kind.items() if k != "good"},
               "acknowledged_events": len(acked), "in_data_topic": len(ids), "in_dlq": len(dlq_ids),
               "duplicates": sum(c - 1 for c in ids.values()) + sum(c - 1 for c in dlq_ids.values())}
    print(f"\nPOISON LOAD FIGURES: {json.dumps(figures)}")

