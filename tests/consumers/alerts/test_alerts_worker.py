"""``tpipe consume alerts`` end to end: real Kafka, the runtime, a real HTTP receiver, SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson
import pytest

from consumers.alerts.events import parse_event
from consumers.alerts.settings import AlertsSettings
from consumers.alerts.store import AlertStore
from consumers.alerts.worker import AlertsWorker
from consumers.runtime import header_map
from consumers.sqlstore import make_engine
from plumbing.settings import KafkaSettings
from schemas.envelope import Envelope
from schemas.event_types import EventType, SourceFormat
from schemas.times import to_ms
from schemas.topics import dlq_topic, notifications_topic
from tests.support.events import envelopes
from tests.support.hook_server import SECRET, HookServer, assert_signed
from tests.support.kafka_broker import produce_envelopes, read_all, read_until_quiet
from tests.support.postgres import db_url, postgres_url  # noqa: F401
from tests.support.samples.alerts import alert, alert_event, alert_stream, error_event
from tests.support.waiting import wait_until
from tests.support.workers import RunningWorker, handled_total, worker_settings

pytestmark = pytest.mark.kafka

T0 = to_ms("2026-04-02T08:00:00Z") or 0
MIN = 60_000
VINS = ["LRW3F7EK4NC700000", "5YJ3E1EA7KF000001", "7SAYGDEE1PF000002"]


@pytest.fixture
def hook() -> Iterator[HookServer]:
    with HookServer(fail_first=2) as srv:
        yield srv


def stream() -> list[Envelope]:
    objs = alert_stream(vins=VINS, start_ms=T0, count=14, seed=9)
    # An end that arrives before its start, and an end delivered twice.
    vin = VINS[0]
    late_start = alert_event(vin, T0 + 3 * MIN, alert("CHG_a017_chargePortFault", ["Customer"], T0 + 2 * MIN))
    early_end = alert_event(vin, T0 + 9 * MIN, alert("CHG_a017_chargePortFault", ["Customer"], T0 + 2 * MIN, T0 + 8 * MIN))
    objs += [early_end, late_start, early_end]
    objs.append(error_event(VINS[1], T0 + 5 * MIN, "decode_error", {"field_name": "Odometer", "name": "nan"}, "x"))
    return envelopes(objs, received_at_ms=T0 + 600 * MIN)


async def test_alerts_worker_end_to_end(kafka_settings: KafkaSettings, db_url: str, hook: HookServer) -> None:  # noqa: F811
    envs = stream()
    # Expected state: the same events applied once, in order, to an in-memory database.
    ref = AlertStore(make_engine("sqlite://"))
    ref.create_tables()
    ref.apply([parse_event(e) for e in envs])
    expected_ids = sorted(str(r["notification_id"]) for r in ref.outbox.all_rows(ref.engine))
    expected_active = sorted((a["vin"], a["name"], a["started_at_ms"]) for a in ref.active())
    assert expected_ids and expected_active

    settings = worker_settings(
        kafka_settings, AlertsSettings, alerts_db_url=db_url, notify_http_url=hook.url,
        notify_http_secret=SECRET, notify_http_attempts=5, notify_http_backoff_s=0.02,
    )
    shuffled = list(envs)
    random.Random(3).shuffle(shuffled)  # alerts of one VIN stay in one partition, but arrive shuffled
    produced = await produce_envelopes(settings, shuffled)
    engine = make_engine(db_url)
    store = AlertStore(engine)

    async with RunningWorker(AlertsWorker(settings), settings) as rt:
        await wait_until(lambda: handled_total(rt) == produced, what="every record handled")
        await wait_until(lambda: store.outbox.counts(engine) == {"pending": 0, "done": len(expected_ids)},
                         "notifications delivered", in_thread=True)

    assert sorted((a["vin"], a["name"], a["started_at_ms"]) for a in store.active()) == expected_active
    chg = [h for h in store.history(vin=VINS[0]) if h["started_at_ms"] == T0 + 2 * MIN]
    assert len(chg) == 1 and chg[0]["ended_at_ms"] == T0 + 8 * MIN  # end-before-start paired
    assert len(store.errors()) == len(ref.errors())
    (err,) = [e for e in store.errors(vin=VINS[1]) if e["tags"]["field_name"] == "Odometer"]
    assert err["tags"] == {"field_name": "Odometer", "name": "nan"}

    # HTTP: every notification once (ids distinct), signed; the first two requests were refused and retried.
    accepted = hook.accepted()
    ids = [r.headers["webhook-id"] for r in accepted]
    assert sorted(ids) == expected_ids
    assert len(hook.all()) == len(accepted) + 2
    for r in hook.all():
        assert_signed(r)
    # Kafka: the same notifications on <prefix>.notifications, keyed by VIN.
    notes = await read_until_quiet(settings, notifications_topic(settings.topic_prefix), quiet_s=1.0,
                                   min_count=len(expected_ids))
    assert sorted(orjson.loads(n.value)["notification_id"] for n in notes) == expected_ids
    assert all(n.key == orjson.loads(n.value)["vin"].encode() for n in notes)

    # Restart and replay everything (new group): state unchanged, nobody notified again.
    replay = settings.model_copy(update={"group_id": f"{settings.topic_prefix}.alerts-replay"})
    async with RunningWorker(AlertsWorker(replay), replay) as rt2:
        await wait_until(lambda: handled_total(rt2) == produced, what="replay handled")
    assert store.outbox.counts(engine) == {"pending": 0, "done": len(expected_ids)}
    assert len(hook.accepted()) == len(expected_ids)
    assert sorted((a["vin"], a["name"], a["started_at_ms"]) for a in store.active()) == expected_active
    engine.dispose()


async def test_undeliverable_notification_and_bad_record_go_to_the_dlq(kafka_settings: KafkaSettings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with HookServer(status=500) as srv:
        settings = worker_settings(
            kafka_settings, AlertsSettings, alerts_db_url=f"sqlite:///{tmp_path}/alerts.db",
            notify_http_url=srv.url, notify_http_secret=SECRET, notify_http_attempts=2,
            notify_http_backoff_s=0.01, notify_kafka=False,
        )
        good = envelopes([alert_event(VINS[0], T0, alert("APP_w009_aebFault", ["Customer"], T0))])
        bad = Envelope(
            event_id="f" * 32, type=EventType.ALERTS, vin=VINS[1], created_at="2026-04-02T08:00:00.000Z",
            created_at_ms=T0, received_at="2026-04-02T08:00:01.000Z", received_at_ms=T0 + 1000,
            source_format=SourceFormat.TESLEMETRY, payload={"vin": VINS[1], "alerts": "not-a-list"},
        )
        produced = await produce_envelopes(settings, [*good, bad])
        async with RunningWorker(AlertsWorker(settings), settings) as rt:
            await wait_until(lambda: handled_total(rt) == produced, what="records handled")
            dead = await read_all(settings, dlq_topic(settings.topic_prefix), expected_count=2, timeout=30)
    assert len(dead) == 2
    by_type = {header_map(d.headers)["dlq_error_type"]: d for d in dead}
    assert set(by_type) == {"InvalidEventError", "NotificationUndeliverable"}
    nd = by_type["NotificationUndeliverable"]
    assert header_map(nd.headers)["dlq_error"] == "HTTP 500"
    assert orjson.loads(nd.value)["details"]["name"] == "APP_w009_aebFault"
    assert len(srv.all()) == 2  # two attempts, then the dead letter
    assert by_type["InvalidEventError"].value == bad.to_json()
