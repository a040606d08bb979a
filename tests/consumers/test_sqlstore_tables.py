"""Workers of one group starting at the same moment on a new PostgreSQL database all create the
tables they need: none dies on a concurrent ``CREATE TABLE IF NOT EXISTS``."""

from __future__ import annotations

import threading

import pytest

from consumers.alerts.store import AlertStore
from consumers.sqlstore import make_engine
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres


def _start_together(stores: list[AlertStore]) -> list[BaseException]:
    """``create_tables`` of every store at the same instant, one thread each; the errors raised."""
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def start(store: AlertStore) -> None:
        barrier.wait(timeout=30)
        try:
            store.create_tables()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_workers_creating_the_tables_at_once_all_succeed(postgres_url: str) -> None:  # noqa: F811
    for _ in range(4):  # a race: a few fresh databases, three workers each
        url = fresh_database(postgres_url, "tpipe_tables")
        stores = [AlertStore(make_engine(url)) for _ in range(3)]
        try:
            errors = _start_together(stores)
        finally:
            for s in stores:
                s.engine.dispose()
        assert not errors, errors[0]
