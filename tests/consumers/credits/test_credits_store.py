"""Credits ledger, low-balance alarm and report, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest

from consumers.credits.report import build_report, render_png, render_report
from consumers.credits.store import CreditEvent, CreditStore, parse_event
from consumers.sqlstore import make_engine
from schemas.parse import parse_object
from schemas.times import format_ms, to_ms
from tests.support.events import envelopes
from tests.support.postgres import db_url, postgres_url  # noqa: F401
from tests.support.samples.credits import credit_events

DAY = 86_400_000
START = to_ms("2026-03-01T00:00:00Z") or 0


def as_events(objs: list[dict[str, Any]]) -> list[CreditEvent]:
    return [parse_event(env) for env in envelopes(objs, received_at_ms=START + 10 * DAY)]


def store_for(url: str, low: int | None = None) -> CreditStore:
    s = CreditStore(make_engine(url), low_balance=low)
    s.create_tables()
    return s


def test_ledger_totals_exact_with_duplicates_and_out_of_order(db_url: str) -> None:  # noqa: F811
    events = as_events(credit_events(start_ms=START, days=5, per_day=30, balance=3000))
    expected_cost = sum(e.cost for e in events)
    expected_balance = max(events, key=lambda e: (e.created_at_ms, e.event_id)).balance

    # Reference: everything once, in order, on SQLite in memory.
    ref = store_for("sqlite://")
    ref.apply(events)

    rng = random.Random(1)
    stream = events + rng.sample(events, 60) + rng.sample(events, 25)  # redeliveries
    rng.shuffle(stream)
    store = store_for(db_url)
    applied = dups = 0
    for i in range(0, len(stream), 17):  # batches of 17, duplicates within and across batches
        r = store.apply(stream[i : i + 17])
        applied += r.applied
        dups += r.duplicates
    assert applied == len(events)
    assert dups == len(stream) - len(events)
    totals = store.totals()
    assert totals == {"events": len(events), "cost": expected_cost, "snapshots": 1}
    assert store.current() is not None and store.current()["balance"] == expected_balance  # type: ignore[index]
    assert store.usage_by_day() == ref.usage_by_day()
    assert store.usage_by_type() == ref.usage_by_type()
    assert sum(d["cost"] for d in store.usage_by_day()) == expected_cost
    # Everything applied again, as one batch: nothing changes.
    again = store.apply(events)
    assert again.applied == 0 and again.duplicates == len(events)
    assert store.totals() == totals


def test_balance_is_from_newest_created_at_not_arrival(db_url: str) -> None:  # noqa: F811
    store = store_for(db_url)
    newer, older = as_events(
        [
            {"createdAt": "2026-03-02T10:00:00.000Z", "credits": {"type": "command", "cost": 1, "name": "x", "balance": 90}},
            {"createdAt": "2026-03-02T09:00:00.000Z", "credits": {"type": "command", "cost": 1, "name": "x", "balance": 91}},
        ]
    )
    store.apply([newer])
    store.apply([older])  # arrives last, but is older
    assert store.current()["balance"] == 90  # type: ignore[index]


def _balance_event(minute: int, balance: int, cost: int = 1) -> dict[str, Any]:
    return {
        "createdAt": f"2026-03-02T10:{minute:02d}:00.000Z",
        "credits": {"type": "command", "cost": cost, "name": "door_lock", "balance": balance},
    }


def test_low_balance_fires_once_and_rearms(db_url: str) -> None:  # noqa: F811
    store = store_for(db_url, low=50)
    first = as_events([_balance_event(m, b) for m, b in enumerate([100, 80, 60, 45, 40, 30])])
    r = store.apply(first[:3])
    assert r.notifications == []
    r = store.apply(first[3:])
    assert len(r.notifications) == 1  # crossed at 45, then stays quiet at 40 and 30
    # Redelivery of everything, and a restart (a new store on the same database): still one.
    store = store_for(db_url, low=50)
    assert store.apply(first).notifications == []
    # A late event, older than what the alarm has seen and above the threshold, does not re-arm it.
    late = as_events([{"createdAt": "2026-03-02T09:59:00.000Z", "credits": {"type": "command", "cost": 1, "name": "x", "balance": 500}}])
    assert store.apply(late).notifications == []
    assert store.alarm_state()["armed"] is False  # type: ignore[index]
    # Top-up above the threshold re-arms; the next drop fires again.
    second = as_events([_balance_event(10, 200, 0), _balance_event(11, 60), _balance_event(12, 49)])
    r = store.apply(second)
    assert len(r.notifications) == 1
    rows = store.outbox.all_rows(store.engine)
    assert len(rows) == 2
    assert [ (r["kind"], r["done_at_ms"]) for r in rows] == [("low_balance", None), ("low_balance", None)]
    state = store.alarm_state()
    assert state is not None and state["fired"] == 2 and state["armed"] is False


def test_low_balance_out_of_order_within_batch_fires_once(db_url: str) -> None:  # noqa: F811
    store = store_for(db_url, low=50)
    evs = as_events([_balance_event(m, b) for m, b in enumerate([100, 70, 45, 40, 35, 20])])
    shuffled = list(evs)
    random.Random(5).shuffle(shuffled)
    r = store.apply(shuffled)
    assert len(r.notifications) == 1
    assert store.alarm_state()["last_balance"] == 20  # type: ignore[index]


def test_threshold_configured_later_fires_on_current_balance(db_url: str) -> None:  # noqa: F811
    store = store_for(db_url)
    store.apply(as_events([_balance_event(0, 30)]))
    store = store_for(db_url, low=50)
    assert len(store.apply([]).notifications) == 1
    assert store.apply([]).notifications == []


def test_report_numbers_and_png(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    store = store_for(db_url, low=100)
    events = as_events(credit_events(start_ms=START, days=10, per_day=24, balance=2000, seed=11))
    store.apply(events)
    as_of = START + 10 * DAY - 1
    rep = build_report(store, days=7, window_days=7, as_of_ms=as_of)
    newest = max(events, key=lambda e: (e.created_at_ms, e.event_id))
    assert rep.balance == newest.balance
    window = [e for e in events if as_of - 7 * DAY <= e.created_at_ms <= as_of]
    assert rep.window_cost == sum(e.cost for e in window)
    assert rep.burn_per_day == pytest.approx(rep.window_cost / 7)
    assert rep.runs_out_ms == as_of + int(newest.balance / rep.burn_per_day * DAY)
    assert [d["day"] for d in rep.by_day] == [f"2026-03-{d:02d}" for d in range(4, 11)]
    since = to_ms("2026-03-04T00:00:00Z") or 0
    assert sum(d["cost"] for d in rep.by_day) == sum(e.cost for e in events if e.created_at_ms >= since)
    assert rep.by_day[-1]["balance"] == newest.balance
    buf = io.StringIO()
    render_report(rep, out=buf)
    text = buf.getvalue()
    assert "burn rate" in text and "Usage per day" in text and "2026-03-10" in text
    assert "2026-03-04 to 2026-03-10 (UTC; 7 days ending with the --as-of day)" in text
    png = render_png(rep, tmp_path / "credits.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_invalid_credits_events_are_rejected() -> None:
    from consumers.credits.store import InvalidEventError

    bad = parse_object({"createdAt": "2026-03-02T10:00:00Z", "credits": {"type": "x", "cost": "lots", "balance": 5}},
                       received_at_ms=START)
    with pytest.raises(InvalidEventError):
        parse_event(bad[0])
    ok = parse_event(parse_object({"createdAt": "2026-03-02T10:00:00Z", "credits": {"balance": 5.0, "cost": "2"}},
                                  received_at_ms=START)[0])
    assert (ok.balance, ok.cost, ok.type) == (5, 2, "unknown")


def test_cli_report_prints_tables_and_draws_png(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from tpipe.cli import main

    store_for(db_url, low=100).apply(as_events(credit_events(start_ms=START, days=3, per_day=10, balance=500)))
    png = tmp_path / "out" / "credits.png"
    rc = main(["credits", "report", "--db-url", db_url, "--days", "3", "--as-of", "2026-03-03T23:00:00Z",
               "--png", str(png)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "balance" in out and "2026-03-01" in out and "2026-03-03" in out and "Usage per type" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["credits", "report", "--db-url", db_url, "--days", "0"]) == 2


def test_report_defaults_to_the_ledgers_own_last_days(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A stream older than --days (here March 2026, read long after): no --as-of needed for full tables."""
    import orjson

    from tpipe.cli import main

    events = as_events(credit_events(start_ms=START, days=20, per_day=5, balance=3000, seed=3))
    store_for(db_url).apply(events)
    newest = max(events, key=lambda e: (e.created_at_ms, e.event_id))
    assert main(["credits", "report", "--db-url", db_url, "--days", "5", "--format", "json"]) == 0
    captured = capsys.readouterr()
    rep = orjson.loads(captured.out)
    assert rep["as_of_source"] == "newest event" and rep["as_of"] == format_ms(newest.created_at_ms)
    assert [d["day"] for d in rep["by_day"]] == [f"2026-03-{d:02d}" for d in range(16, 21)]
    assert sum(d["events"] for d in rep["by_day"]) == sum(t["events"] for t in rep["by_type"]) > 0
    first = to_ms("2026-03-16T00:00:00Z") or 0
    assert sum(t["cost"] for t in rep["by_type"]) == sum(e.cost for e in events if e.created_at_ms >= first)
    assert "credits database:" in captured.err  # which store it read
    assert main(["credits", "report", "--db-url", db_url, "--days", "5"]) == 0
    assert "2026-03-16 to 2026-03-20 (UTC; 5 days ending with the newest event's day)" in capsys.readouterr().out
