"""Sending dead letters back once their cause is fixed, each exactly once unless forced.

``plan_redrive`` decides, for every selected dead letter, where it goes and whether it goes:

* an ``event`` (it has a source topic) goes back to that topic, or to ``to_topic``; with ``to_url``
  its envelope's payload is POSTed to a receiver instead (which parses it again: same ``event_id``);
* a ``webhook_body`` (the receiver could not parse it: no source topic) can only become events in a
  receiver: it is POSTed as received to ``to_url``, and skipped without it;
* a ``notification`` has no topic of its own: only ``to_topic`` takes it;
* a dead letter already redriven (found in ``<prefix>.dlq.redriven``) is skipped unless ``force``.

``execute_redrive`` sends what the plan says: to a topic the record's own key, value, timestamp and
headers (without the ``dlq_*`` ones, plus ``dlq_redriven_from=<partition>:<offset>``), acks=all; to a
URL one POST at a time (retried like ``tpipe replay --to-url``). Only after a record is acknowledged
(by Kafka, or with a 2xx) is it recorded in ``<prefix>.dlq.redriven``, a compacted topic keyed by the
dead letter's ``partition:offset`` whose value says when, where to and which ``dlq_at_ms`` it had (a
DLQ recreated with the same offsets does not match). A crash between the send and the record can
redrive a record twice; every consumer deduplicates by ``event_id``, so its effect still applies once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumers.command import UsageError
from consumers.dlq.reader import EVENT, NOTIFICATION, WEBHOOK_BODY, DlqFilter, DlqRecord, read_dlq
from consumers.replay.progress import Progress
from plumbing.kafka_clients import ensure_topics, make_producer
from plumbing.progress import ProgressListener
from plumbing.settings import KafkaSettings
from schemas.dlq import DLQ_REDRIVEN_FROM
from schemas.times import format_ms, now_ms
from schemas.topics import dlq_redriven_topic

__all__ = ["RedriveItem", "RedrivePlan", "execute_redrive", "plan_redrive", "read_redriven"]

SEND, SKIP = "send", "skip"


@dataclass(frozen=True, slots=True)
class RedriveItem:
    record: DlqRecord
    action: str  # send | skip
    target: str  # "topic <name>" / "url <shown url>" / "" (skipped: no target)
    note: str = ""  # why it is skipped, or what it is

    def row(self) -> dict[str, Any]:
        r = self.record
        return {"dlq": r.position, "at": format_ms(r.at_ms), "worker": r.worker, "error_type": r.error_type,
                "event_id": r.event_id, "action": self.action, "target": self.target, "note": self.note}


@dataclass
class RedrivePlan:
    items: list[RedriveItem] = field(default_factory=list)
    sent: int | None = None  # None: not executed (a dry run)

    @property
    def to_send(self) -> list[RedriveItem]:
        return [i for i in self.items if i.action == SEND]

    @property
    def skipped(self) -> list[RedriveItem]:
        return [i for i in self.items if i.action == SKIP]

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.sent is None, "selected": len(self.items), "to_send": len(self.to_send),
                "skipped": len(self.skipped), "sent": self.sent, "items": [i.row() for i in self.items]}


async def read_redriven(settings: KafkaSettings) -> dict[str, dict[str, Any]]:
    """``partition:offset`` -> the latest redrive record of that dead letter (the compacted log, read to its end)."""
    topic = dlq_redriven_topic(settings.topic_prefix)
    out: dict[str, dict[str, Any]] = {}
    from consumers.dlq.reader import iter_dlq

    async for rec in iter_dlq(settings, topic=topic):  # the same bounded read; no filter
        if rec.key is None:
            continue
        key = rec.key.decode()
        if rec.value is None:  # a tombstone: forgotten
            out.pop(key, None)
            continue
        try:
            out[key] = orjson.loads(rec.value)
        except orjson.JSONDecodeError:
            continue
    return out


def _decide(r: DlqRecord, done: dict[str, Any] | None, *, to_topic: str | None, to_url_shown: str | None,
            force: bool) -> RedriveItem:
    if done is not None and done.get("dlq_at_ms") == r.at_ms and not force:
        return RedriveItem(r, SKIP, "", f"already redriven {done.get('at', '?')} to {done.get('target', '?')} "
                                        "(--force sends it again)")
    if r.kind == NOTIFICATION and not to_topic:
        return RedriveItem(r, SKIP, "", "a notification: it has no topic of its own (give --to-topic)")
    if to_url_shown is not None:
        if r.kind == NOTIFICATION:
            return RedriveItem(r, SKIP, "", "a notification is not a webhook (give --to-topic)")
        return RedriveItem(r, SEND, f"url {to_url_shown}", "webhook body as received" if r.kind == WEBHOOK_BODY
                           else "the event's payload")
    if r.kind == WEBHOOK_BODY:
        return RedriveItem(r, SKIP, "", "a webhook body the receiver could not parse: only a receiver can "
                                        "redrive it (give --to-url http://<receiver>/webhook)")
    target = to_topic or r.source_topic
    assert target is not None
    return RedriveItem(r, SEND, f"topic {target}")


async def plan_redrive(settings: KafkaSettings, flt: DlqFilter, *, to_topic: str | None = None,
                       to_url_shown: str | None = None, force: bool = False) -> RedrivePlan:
    """What a redrive of the dead letters matching ``flt`` would do (reads the DLQ and the redrive log)."""
    if to_topic and to_url_shown:
        raise UsageError("choose one target: --to-topic or --to-url (default: each record's source topic)")
    records, done = await asyncio.gather(read_dlq(settings, flt), read_redriven(settings))
    return RedrivePlan([_decide(r, done.get(r.position), to_topic=to_topic, to_url_shown=to_url_shown, force=force)
                        for r in records])


def _mark(item: RedriveItem) -> tuple[bytes, bytes]:
    r = item.record
    value = {"dlq_at_ms": r.at_ms, "at": format_ms(now_ms()), "target": item.target, "event_id": r.event_id,
             "worker": r.worker, "error_type": r.error_type}
    return r.position.encode(), orjson.dumps(value)


def _webhook_body(r: DlqRecord) -> bytes:
    """What to POST: a webhook body as received, or an event's payload (as the receiver first got it)."""
    if r.kind != EVENT:
        return r.value or b""
    env = r.payload()
    return orjson.dumps(env.get("payload", env) if isinstance(env, dict) else env)


async def execute_redrive(settings: KafkaSettings, plan: RedrivePlan, *, url_sink: Any | None = None,
                          show_progress: bool | None = None,
                          on_progress: ProgressListener | None = None) -> RedrivePlan:
    """Send ``plan.to_send`` and record each acknowledged one; returns the plan with ``sent`` set.

    ``url_sink`` (a started-or-not ``consumers.replay.sinks.UrlSink``) is needed for ``url`` targets;
    ``on_progress(done, total, sent)`` receives the progress bar's numbers."""
    items = plan.to_send
    log_topic = dlq_redriven_topic(settings.topic_prefix)
    topics = sorted({i.target.removeprefix("topic ") for i in items if i.target.startswith("topic ")})
    await ensure_topics(settings, [log_topic], partitions=1, configs={"cleanup.policy": "compact"})
    if topics:
        await ensure_topics(settings, topics)
    progress = Progress(len(items), label="redrive", enabled=show_progress, unit="rec", on_update=on_progress)
    producer = make_producer(settings, role="dlq-redrive")
    await producer.start()
    sent = 0
    try:
        if url_sink is not None:
            await url_sink.start()
        for chunk_start in range(0, len(items), 500):
            chunk = items[chunk_start:chunk_start + 500]
            posted: list[RedriveItem] = []  # acknowledged by a receiver (2xx)
            pending: list[tuple[RedriveItem, asyncio.Future[Any]]] = []  # sent to Kafka, ack awaited
            try:
                for item in chunk:
                    r = item.record
                    if item.target.startswith("url "):
                        if url_sink is None:
                            raise UsageError("a URL target needs --to-url")
                        await url_sink.post(_webhook_body(r), r.event_id)
                        posted.append(item)
                        continue
                    headers = [*r.original_headers(), (DLQ_REDRIVEN_FROM, r.position.encode())]
                    fut = await producer.send(item.target.removeprefix("topic "), r.value, key=r.key,
                                              headers=headers, timestamp_ms=r.timestamp_ms)
                    pending.append((item, fut))
                await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
            finally:  # record what was acknowledged, also when a later record failed
                acked = posted + [i for i, f in pending if f.done() and not f.cancelled() and f.exception() is None]
                if acked:
                    await asyncio.gather(*[await producer.send(log_topic, v, key=k) for k, v in map(_mark, acked)])
                sent += len(acked)
                progress.add_sent(len(acked))
                progress.scanned(len(acked))
            failed = [f.exception() for _, f in pending if f.done() and not f.cancelled() and f.exception()]
            if failed:
                raise failed[0]  # type: ignore[misc]
    finally:
        progress.close()
        if url_sink is not None:
            await url_sink.close()
        await producer.stop()
    plan.sent = sent
    return plan
