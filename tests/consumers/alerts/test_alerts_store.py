"""Alert occurrences, history, errors and notification rules, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumers.alerts.events import InvalidEventError, ParsedEvent, parse_event
from consumers.alerts.rules import DEFAULT_RULES, RulesError, load_rules
from consumers.alerts.store import AlertStore
from consumers.sqlstore import make_engine
from schemas.parse import parse_object
from schemas.times import to_ms
from tests.support.postgres import db_url, postgres_url  # noqa: F401
from tests.support.samples.alerts import alert, alert_event, alert_stream, error_event

T0 = to_ms("2026-03-11T21:00:00Z") or 0
VIN = "LRW3F7EK4NC700000"
VIN2 = "5YJ3E1EA7KF000001"
MIN = 60_000


def parsed(*objs: dict[str, Any]) -> list[ParsedEvent]:
    return [parse_event(env) for o in objs for env in parse_object(o, received_at_ms=T0 + 99 * MIN)]


def store_for(url: str, rules: Any = DEFAULT_RULES) -> AlertStore:
    s = AlertStore(make_engine(url), rules)
    s.create_tables()
    return s


def test_start_end_pairing_including_end_before_start(db_url: str) -> None:  # noqa: F811
    store = store_for(db_url)
    aeb_start = alert_event(VIN, T0 + 1000, alert("APP_w009_aebFault", ["Customer"], T0, description="AEB unavailable"))
    aeb_end = alert_event(VIN, T0 + 5 * MIN, alert("APP_w009_aebFault", ["Customer"], T0, T0 + 4 * MIN))
    bms_end = alert_event(VIN, T0 + 9 * MIN, alert("BMS_w043", ["Service"], T0 + 2 * MIN, T0 + 8 * MIN))
    bms_start = alert_event(VIN, T0 + 2 * MIN + 500, alert("BMS_w043", ["Service"], T0 + 2 * MIN))
    chg = alert_event(VIN2, T0 + 3 * MIN, alert("CHG_a017", ["Customer", "Service"], T0 + 3 * MIN))

    r = store.apply(parsed(aeb_start, chg))
    assert (r.applied, r.opened, r.closed) == (2, 2, 0)
    assert {(a["vin"], a["name"]) for a in store.active()} == {(VIN, "APP_w009_aebFault"), (VIN2, "CHG_a017")}

    r = store.apply(parsed(bms_end))  # the end arrives before its start
    assert (r.opened, r.closed) == (1, 1)
    r = store.apply(parsed(bms_start))  # the late start must not re-open it
    assert (r.opened, r.closed) == (0, 0)
    r = store.apply(parsed(aeb_end, aeb_end))  # an end twice (in one batch) ...
    assert (r.applied, r.duplicates, r.closed) == (1, 1, 1)
    assert store.apply(parsed(aeb_end)).duplicates == 1  # ... and again later
    assert [(a["vin"], a["name"]) for a in store.active()] == [(VIN2, "CHG_a017")]
    assert store.active(vin=VIN) == []

    hist = {(h["vin"], h["name"]): h for h in store.history()}
    assert len(hist) == 3
    aeb = hist[(VIN, "APP_w009_aebFault")]
    assert (aeb["started_at_ms"], aeb["ended_at_ms"], aeb["active"]) == (T0, T0 + 4 * MIN, False)
    assert aeb["details"] == {"description": "AEB unavailable"}
    bms = hist[(VIN, "BMS_w043")]
    assert (bms["ended_at_ms"], bms["first_seen_ms"], bms["last_seen_ms"]) == (T0 + 8 * MIN, T0 + 2 * MIN + 500, T0 + 9 * MIN)
    assert [h["name"] for h in store.history(vin=VIN, since_ms=T0 + MIN)] == ["BMS_w043"]


def test_same_stream_any_order_same_state(db_url: str) -> None:  # noqa: F811
    import random

    events = parsed(*alert_stream(vins=[VIN, VIN2], start_ms=T0, count=25))
    ref = store_for("sqlite://")
    ref.apply(events)
    store = store_for(db_url)
    shuffled = events + events[:10]
    random.Random(2).shuffle(shuffled)
    for i in range(0, len(shuffled), 7):
        store.apply(shuffled[i : i + 7])

    def strip(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((r["vin"], r["name"], r["started_at_ms"], r["ended_at_ms"], r["notification_id"]) for r in rows)

    assert strip(store.history()) == strip(ref.history())
    assert strip(store.active()) == strip(ref.active())
    assert len(store.outbox.all_rows(store.engine)) == len(ref.outbox.all_rows(ref.engine))
    assert store.event_count() == len(events)


def test_each_alert_notifies_once_by_default_rules(db_url: str) -> None:  # noqa: F811
    store = store_for(db_url)
    cust = alert("APP_w009_aebFault", ["Customer", "ServiceFix"], T0, customerFacingMessage1="AEB unavailable")
    svc = alert("BMS_w043", ["Service"], T0)
    e1 = alert_event(VIN, T0 + 1000, cust, svc)
    e2 = {**alert_event(VIN, T0 + 2000, cust), "isCache": True}  # snapshot of the same occurrence
    e3 = alert_event(VIN, T0 + 3000, {**cust, "endedAt": "2026-03-11T21:10:00Z"})
    r1 = store.apply(parsed(e1))
    assert len(r1.notifications) == 1  # only the Customer-audience alert
    assert store.apply(parsed(e2, e3)).notifications == []
    assert store.apply(parsed(e1, e2, e3)).notifications == []  # replay
    store2 = store_for(db_url)  # restart
    assert store2.apply(parsed(e1)).notifications == []
    (row,) = store.outbox.all_rows(store.engine)
    assert row["kind"] == "alert" and row["vin"] == VIN
    assert "AEB unavailable" in str(row["subject"])
    assert json.loads(str(row["details"]))["audiences"] == ["Customer", "ServiceFix"]
    # A new occurrence of the same alert (new startedAt) notifies again.
    again = alert_event(VIN, T0 + 60 * MIN, {**cust, "startedAt": "2026-03-11T22:00:00Z"})
    assert len(store.apply(parsed(again)).notifications) == 1


def test_rules_files_glob_regex_vin_and_sinks(tmp_path: Path) -> None:
    y = tmp_path / "rules.yaml"
    y.write_text(
        "rules:\n"
        "  - name: 'UI_*'\n    notify: false\n"
        "  - name_regex: '^BMS_w0[0-9]+'\n    vins: [" + VIN + "]\n    sinks: [http]\n"
        "  - audiences: Customer\n"
    )
    rules = load_rules(y)
    assert rules.decide("UI_a020", ["Customer"], VIN) is None
    bms = rules.decide("BMS_w043", ["Service"], VIN)
    assert bms is not None and bms.sinks == ("http",)
    assert rules.decide("BMS_w043", ["Service"], VIN2) is None
    assert rules.decide("CHG_a017", ["Customer"], VIN2) is not None
    j = tmp_path / "rules.json"
    j.write_text(json.dumps([{"name": "*", "audiences": ["Service", "ServiceFix"]}]))
    assert load_rules(j).decide("X", ["ServiceFix"], None) is not None
    assert load_rules(j).decide("X", ["Customer"], None) is None
    assert load_rules(None) is DEFAULT_RULES
    for bad in ("- nme: x\n", "- name_regex: '('\n", "- sinks: [pager]\n", "rules: 3\n"):
        y.write_text(bad)
        with pytest.raises(RulesError):
            load_rules(y)


def test_rule_sinks_reach_the_outbox(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    y = tmp_path / "r.yaml"
    y.write_text("- name: 'BMS_*'\n  sinks: [log, kafka]\n")
    store = store_for(db_url, load_rules(y))
    store.apply(parsed(alert_event(VIN, T0, alert("BMS_w043", ["Service"], T0), alert("APP_x", ["Customer"], T0))))
    (row,) = store.outbox.all_rows(store.engine)
    assert row["sinks"] == "log,kafka"


def test_errors_are_kept_with_tags(db_url: str) -> None:  # noqa: F811
    store = store_for(db_url)
    e = error_event(VIN, T0 + 5000, "decode_error", {"field_name": "BatteryLevel", "name": "nan"}, "bad value")
    r = store.apply(parsed(e, e))
    assert (r.applied, r.duplicates) == (1, 1)
    (err,) = store.errors(vin=VIN)
    assert err["tags"] == {"field_name": "BatteryLevel", "name": "nan"}
    assert (err["name"], err["body"], err["created_at_ms"]) == ("decode_error", "bad value", T0 + 4000)
    assert store.errors(since_ms=T0 + 10_000) == []


def test_invalid_alert_payloads_raise() -> None:
    for payload in (
        {"createdAt": "2026-03-11T21:00:00Z", "vin": VIN, "alerts": [{"audiences": ["Customer"], "startedAt": "2026-03-11T21:00:00Z"}]},
        {"createdAt": "2026-03-11T21:00:00Z", "vin": VIN, "alerts": [{"name": "X", "startedAt": "yesterday"}]},
        {"createdAt": "2026-03-11T21:00:00Z", "vin": VIN, "alerts": [{"name": "X", "startedAt": "2026-03-11T21:00:00Z", "endedAt": "?"}]},
    ):
        (env,) = parse_object(payload, received_at_ms=T0)
        with pytest.raises(InvalidEventError):
            parse_event(env)


def test_cli_active_and_history(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from consumers.alerts.cli import parse_since
    from tpipe.cli import main

    store = store_for(db_url)
    store.apply(parsed(
        alert_event(VIN, T0, alert("APP_w009_aebFault", ["Customer"], T0, description="AEB unavailable")),
        alert_event(VIN2, T0 + MIN, alert("BMS_w043", ["Service"], T0, T0 + MIN)),
        error_event(VIN2, T0 + 2 * MIN, "decode_error", {"field_name": "Odometer"}),
    ))
    assert main(["alerts", "active", "--db-url", db_url]) == 0
    out = capsys.readouterr().out
    assert "APP_w009_aebFault" in out and "AEB unavailable" in out and "BMS_w043" not in out and "1 active" in out
    assert main(["alerts", "history", "--db-url", db_url, "--vin", VIN2, "--since", "2026-03-11T20:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "BMS_w043" in out and "1m00s" in out and "APP_w009" not in out
    assert main(["alerts", "errors", "--db-url", db_url]) == 0
    assert "field_name=Odometer" in capsys.readouterr().out
    assert main(["alerts", "history", "--db-url", db_url, "--since", "whenever"]) == 2
    from datetime import UTC, datetime

    assert parse_since("2h", now=datetime(2026, 1, 1, 2, tzinfo=UTC)) == int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
