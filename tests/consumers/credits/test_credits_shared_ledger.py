"""Credits workers of one group share the ledger on PostgreSQL: the low-balance alarm runs one batch
at a time (the batch's transaction locks the alarm's row), so two workers never both fire it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event

from consumers.credits.store import ApplyResult, CreditStore
from consumers.sqlstore import make_engine
from tests.consumers.credits.test_credits_store import _balance_event, as_events
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres


def test_a_batch_waits_for_the_alarm_another_worker_is_running(postgres_url: str) -> None:  # noqa: F811
    url = fresh_database(postgres_url, "tpipe_credits")
    a, b = CreditStore(make_engine(url), low_balance=50), CreditStore(make_engine(url), low_balance=50)
    a.create_tables()
    e0, e1, e2 = as_events([_balance_event(0, 100), _balance_event(1, 45), _balance_event(2, 40)])
    assert a.apply([e0]).notifications == []  # armed, above the threshold

    inside, go_on = threading.Event(), threading.Event()

    @event.listens_for(a.engine, "before_cursor_execute")
    def pause_in_batch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO credit_events") and not go_on.is_set():
            inside.set()  # worker A holds the alarm and is writing its batch ...
            go_on.wait(30)  # ... until the test lets it commit

    results: dict[str, ApplyResult] = {}
    ta = threading.Thread(target=lambda: results.update(a=a.apply([e1])))
    tb = threading.Thread(target=lambda: results.update(b=b.apply([e2])))
    ta.start()
    assert inside.wait(30), "worker A's batch started"
    tb.start()
    tb.join(timeout=1.0)  # bounded observation: B must be waiting on A's lock, not running the alarm
    blocked = tb.is_alive()
    go_on.set()
    ta.join(30)
    tb.join(30)
    assert blocked, "worker B ran the alarm while A's batch held it"
    assert len(results["a"].notifications) == 1 and results["b"].notifications == []
    assert len(a.outbox.all_rows(a.engine)) == 1
    state = b.alarm_state()
    assert state is not None and state["fired"] == 1 and state["armed"] is False
    a.engine.dispose()
    b.engine.dispose()
