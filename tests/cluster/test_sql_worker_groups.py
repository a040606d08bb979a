"""Several ``tpipe consume credits`` and ``tpipe consume alerts`` processes sharing their groups on
PostgreSQL, exactly once, through a SIGKILL and a join/leave (both groups churn at the same time).

Credits: one account whose balance falls with every event, the events spread over the VINs they were
spent on (so over every partition), with redeliveries; the ledger ends exact (every event once, the
cost summed once) and the low-balance alarm fires once, delivered once. Alerts: occurrences over 12
VINs; the state is what one worker applying the events once would hold, and each notification is
delivered once. Both groups' committed offsets equal the end offsets.
``pytest -m cluster -s`` prints ``CLUSTER FIGURES sql_groups``.
"""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path
from typing import Any

import pytest

from consumers.alerts.events import parse_event as parse_alert
from consumers.alerts.store import AlertStore
from consumers.credits.store import CreditStore
from consumers.sqlstore import make_engine
from localbroker import LocalCluster
from plumbing.kafka_clients import ensure_topics
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.parse import parse_object
from schemas.times import format_ms, to_ms
from schemas.topics import all_topics, notifications_topic
from tests.support.cluster_ops import committed_offsets, end_offsets
from tests.support.kafka_broker import read_until_quiet
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401
from tests.support.samples.alerts import alert_stream
from tests.support.worker_processes import (
    Churn,
    WorkerProcess,
    churn_group,
    produce_paced,
    wait_for,
    worker_starter,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.postgres]

T0 = to_ms("2026-05-01T00:00:00Z") or 0
VINS = [f"LRW3F7EK4NC{n:06d}" for n in range(12)]
CREDITS, CREDITS_RATE = 7000, 150.0  # events, records/s: outlasts the churn; the rest goes at once
OCCURRENCES, ALERTS_RATE = 1200, 40.0
START_BALANCE = 200_000


def credits_stream() -> tuple[list[Envelope], int]:
    """Events of one account, 20 s apart, balance falling by 1-20 each; most name the VIN the credits
    were spent on, every ninth none (key ``account``). Returns them and the threshold crossed midway."""
    out: list[Envelope] = []
    balance = START_BALANCE
    threshold = 0
    for i in range(CREDITS):
        cost = 1 + (i * 7) % 20
        balance -= cost
        obj: dict[str, Any] = {"createdAt": format_ms(T0 + i * 20_000, ""),
                               "credits": {"type": "command", "name": "honk_horn", "cost": cost, "balance": balance}}
        if i % 9:
            obj["vin"] = VINS[i % len(VINS)]
        out.extend(parse_object(obj, received_at_ms=T0 + i * 20_000 + 300))
        if i == CREDITS // 2:
            threshold = balance + 1  # the balance is below it from the middle of the stream on
    return out, threshold


def with_redeliveries(envs: list[Envelope], every: int = 30, back: int = 50) -> list[Envelope]:
    out: list[Envelope] = []
    for i, e in enumerate(envs):
        out.append(e)
        if i % every == every - 1 and i >= back:
            out.append(envs[i - back])
    return out


def alerts_stream() -> list[Envelope]:
    objs = alert_stream(vins=VINS, start_ms=T0, count=OCCURRENCES, seed=18)
    return [env for o in objs for env in parse_object(o, received_at_ms=T0 + 86_400_000)]


async def _caught_up(s: KafkaSettings, group: str, topics: list[str]) -> dict[str, int]:
    ends = {tp: off for tp, off in (await end_offsets(s, topics)).items() if off > 0}
    committed = await committed_offsets(s, group)
    return {"behind": sum(off - committed.get(tp, 0) for tp, off in ends.items())}


async def _drive(name: str, s: KafkaSettings, start: Any, stream: list[Envelope], rate: float, topics: list[str],
                 done: Any) -> tuple[list[WorkerProcess], Churn]:
    """Churn one group while its stream flows, then wait until it committed every end offset and
    ``done()`` holds; stop the workers (exit 0)."""
    workers, churn = await churn_group(start, lambda hurry: produce_paced(s, stream, rate, hurry))
    group = f"{s.topic_prefix}.{name}"
    behind: dict[str, int] = {"behind": -1}

    def caught_up() -> bool:
        return behind["behind"] == 0 and bool(done())

    async def refresh() -> None:
        while not caught_up():
            behind.update(await _caught_up(s, group, topics))
            await asyncio.sleep(0.3)  # offsets poll interval

    poller = asyncio.ensure_future(refresh())
    await wait_for(caught_up, f"the {name} group to catch up", workers=workers)
    await poller
    churn.note(f"{name} caught up")
    for w in workers:
        assert await asyncio.to_thread(w.terminate) == 0, w.tail()
    return workers, churn


async def test_credits_and_alerts_workers_share_their_groups_exactly_once(
    cluster: LocalCluster, cluster_settings: KafkaSettings, postgres_url: str, tmp_path: Path  # noqa: F811
) -> None:
    s, prefix = cluster_settings, cluster_settings.topic_prefix
    await ensure_topics(s, all_topics(prefix))
    credits_db, alerts_db = fresh_database(postgres_url, "tpipe_credits"), fresh_database(postgres_url, "tpipe_alerts")
    credit_envs, threshold = credits_stream()
    alert_envs = alerts_stream()
    ref = AlertStore(make_engine("sqlite://"))
    ref.create_tables()
    ref.apply([parse_alert(e) for e in alert_envs])
    expected_notes = sorted(str(r["notification_id"]) for r in ref.outbox.all_rows(ref.engine))

    credits_store, alerts_store = CreditStore(make_engine(credits_db)), AlertStore(make_engine(alerts_db))
    (tmp_path / "credits").mkdir()
    (tmp_path / "alerts").mkdir()
    start_credits = worker_starter(tmp_path / "credits", "credits", s, "--db-url", credits_db,
                                   "--low-balance", str(threshold))
    start_alerts = worker_starter(tmp_path / "alerts", "alerts", s, "--db-url", alerts_db)

    def credits_done() -> bool:
        try:
            return credits_store.totals()["events"] == len(credit_envs) and \
                credits_store.outbox.counts(credits_store.engine)["pending"] == 0
        except Exception:  # tables not created yet
            return False

    def alerts_done() -> bool:
        try:
            return alerts_store.outbox.counts(alerts_store.engine) == {"pending": 0, "done": len(expected_notes)}
        except Exception:
            return False

    (_, credits_churn), (_, alerts_churn) = await asyncio.gather(
        _drive("credits", s, start_credits, with_redeliveries(credit_envs), CREDITS_RATE, [f"{prefix}.credits"],
               credits_done),
        _drive("alerts", s, start_alerts, with_redeliveries(alert_envs), ALERTS_RATE,
               [f"{prefix}.alerts", f"{prefix}.errors"], alerts_done),
    )
    notes = await read_until_quiet(s, notifications_topic(prefix), quiet_s=2.0, min_count=len(expected_notes) + 1)
    delivered = collections.Counter(dict(n.headers)["notification_id"].decode() for n in notes)
    low = [nid for nid, n in delivered.items() if nid not in expected_notes]
    fig = {
        "credits": {"records_produced": credits_churn.produced, "distinct_events": len(credit_envs),
                    "ledger": credits_store.totals(), "low_balance_notifications": len(low),
                    "low_balance_deliveries": sum(delivered[n] for n in low), "timeline": credits_churn.timeline},
        "alerts": {"records_produced": alerts_churn.produced, "distinct_events": len(alert_envs),
                   "notifications_expected": len(expected_notes),
                   "notifications_delivered": sum(delivered[n] for n in expected_notes),
                   "delivered_twice": sum(1 for n in expected_notes if delivered[n] > 1),
                   "timeline": alerts_churn.timeline},
    }
    print(f"\nCLUSTER FIGURES sql_groups: {json.dumps(fig)}")
    assert credits_store.totals() == {"events": len(credit_envs), "cost": START_BALANCE - credit_envs[-1].payload[
        "credits"]["balance"], "snapshots": 0}, "the ledger is exact"
    assert len(low) == 1 and delivered[low[0]] == 1, "the low balance was notified once"
    key = ("vin", "name", "started_at_ms", "ended_at_ms")
    assert sorted(tuple(h[k] for k in key) for h in alerts_store.history(limit=10**6)) == \
        sorted(tuple(h[k] for k in key) for h in ref.history(limit=10**6)), "the alert state is exact"
    assert len(alerts_store.errors(limit=10**6)) == len(ref.errors(limit=10**6))
    assert {n: delivered[n] for n in expected_notes} == dict.fromkeys(expected_notes, 1), "each alert notified once"
    for store in (credits_store, alerts_store):
        store.engine.dispose()
