"""Workers of one group share one outbox (PostgreSQL): each notification is delivered by one
dispatcher only (``Outbox.claim``), and a dispatcher that dies mid-delivery lets go of it."""

from __future__ import annotations

import asyncio
import collections

import pytest
from sqlalchemy import MetaData

from consumers.notify.dispatcher import Dispatcher
from consumers.notify.model import Notification, notification_id
from consumers.notify.outbox import Outbox
from consumers.notify.sinks import DELIVERED
from consumers.sqlstore import make_engine
from tests.support.postgres import fresh_database, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres


class CountingSink:
    """A sink that records what it was asked to deliver and yields to the other dispatcher each time."""

    name = "kafka"

    def __init__(self, seen: collections.Counter[str]) -> None:
        self.seen = seen

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, n: Notification) -> str:
        await asyncio.sleep(0.001)  # a real delivery takes a round trip: let the other dispatcher run
        self.seen[n.notification_id] += 1
        return DELIVERED


async def test_two_dispatchers_on_one_outbox_deliver_each_notification_once(postgres_url: str) -> None:  # noqa: F811
    url = fresh_database(postgres_url, "tpipe_outbox")
    md = MetaData()
    outbox = Outbox(md)
    engines = [make_engine(url, md), make_engine(url)]  # one per worker process
    ids = [notification_id("claim", i) for i in range(60)]
    with engines[0].begin() as conn:
        for i, nid in enumerate(ids):
            outbox.enqueue(conn, Notification(nid, "alert", f"alert {i}", "VIN1", 1_700_000_000_000 + i))
    seen: collections.Counter[str] = collections.Counter()
    dispatchers = [Dispatcher(e, outbox, [CountingSink(seen)], worker=f"w{i}") for i, e in enumerate(engines)]
    try:
        done = await asyncio.gather(*(d.drain_once() for d in dispatchers))
        assert sum(done) == len(ids) and all(done), f"both dispatchers delivered a share: {done}"
        assert seen == dict.fromkeys(ids, 1), "no notification delivered twice"
        assert outbox.counts(engines[0]) == {"pending": 0, "done": len(ids)}
    finally:
        for e in engines:
            e.dispose()


async def test_a_claim_is_released_when_its_dispatcher_dies(postgres_url: str) -> None:  # noqa: F811
    url = fresh_database(postgres_url, "tpipe_outbox")
    md = MetaData()
    outbox = Outbox(md)
    engine = make_engine(url, md)
    nid = notification_id("claim", "crash")
    with engine.begin() as conn:
        outbox.enqueue(conn, Notification(nid, "alert", "crash", "VIN1", 1_700_000_000_000))
    seen: collections.Counter[str] = collections.Counter()
    other = Dispatcher(make_engine(url), outbox, [CountingSink(seen)], worker="other")
    try:
        holder = engine.connect()
        holder.begin()
        assert outbox.claim(holder, nid) == frozenset()  # a dispatcher delivering it right now
        assert await other.drain_once() == 0 and not seen, "claimed elsewhere: skipped, not delivered"
        holder.close()  # that dispatcher's process died: its connection (and the claim) went with it
        assert await other.drain_once() == 1 and seen == {nid: 1}
    finally:
        other.engine.dispose()
        engine.dispose()
