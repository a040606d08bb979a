"""Events: find events by VIN, type and time window — the newest in Kafka (recent) and in the lake
(history) — and open one to see its envelope, headers, payload and journey.

Kafka is read from the window's start offsets (``offsets_for_times``) with at most ``limit`` records
per partition, newest first; the lake through the query layer's views for the VIN and window. Both
say how long they took."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consumers.errors import StoreMissingError
from consumers.replay.kafka_meta import topic_partitions
from schemas.event_types import EventType
from schemas.topics import topic_for
from tpipe.console.app import Console
from tpipe.console.journey import LAKE_TABLE, journey
from tpipe.console.kafka_records import KafkaEvent, newest_in_window, read_one
from tpipe.console.pages.common import Query, query_of

TITLE = "Events"
PATH = "/events"
TYPES = [t.value for t in EventType]
LAKE_SQL = {
    "telemetry": "SELECT event_id, vin, created_at, 'data' AS type, kafka_topic, kafka_partition, kafka_offset, "
                 "string_agg(field, ', ' ORDER BY field) AS summary FROM telemetry GROUP BY ALL",
    "vehicle_state": "SELECT event_id, vin, created_at, kind AS type, kafka_topic, kafka_partition, kafka_offset, "
                     "coalesce(state, network_interface || ' ' || status) AS summary FROM vehicle_state",
    "vehicle_data": "SELECT event_id, vin, created_at, 'vehicle_data' AS type, kafka_topic, kafka_partition, "
                    "kafka_offset, left(json, 120) AS summary FROM vehicle_data",
}


def _types(request: Request) -> list[str]:
    chosen = [t for t in request.query_params.getlist("type") if t in TYPES]
    return chosen or TYPES


async def _kafka(console: Console, q: Query, types: list[str]) -> tuple[list[KafkaEvent], bool, float, str | None]:
    t0 = time.perf_counter()
    try:
        async with console.kafka.lock:
            admin, consumer = await asyncio.wait_for(console.kafka.clients(), 5)
            parts = await topic_partitions(admin)
            topics = [topic_for(t, console.settings.topic_prefix) for t in types]
            records, cut = await newest_in_window(consumer, topics, parts, since_ms=q.since_ms, until_ms=q.until_ms,
                                                  scan_per_partition=q.limit, deadline_s=5.0)
    except Exception as exc:  # Kafka down: the lake half of the page still answers
        await console.kafka.close()
        return [], False, (time.perf_counter() - t0) * 1000, f"Kafka: {type(exc).__name__}: {exc}"
    found = [KafkaEvent.of(r) for r in records
             if q.since_ms <= r.timestamp < q.until_ms and (q.vin is None or (r.key or b"").decode() == q.vin)]
    found.sort(key=lambda e: (e.timestamp_ms, e.offset), reverse=True)
    return found[: q.limit], cut, (time.perf_counter() - t0) * 1000, None


def _lake(console: Console, q: Query, types: list[str]) -> list[tuple[Any, ...]]:
    tables = tuple(dict.fromkeys(LAKE_TABLE[t] for t in types if t in LAKE_TABLE))
    if not tables:
        return []
    con = console.lake.connect(q.window(), tables)
    kinds = [t for t in types if t in LAKE_TABLE]
    sql = " UNION ALL ".join(f"({LAKE_SQL[t]})" for t in tables)
    return con.execute(f"SELECT * FROM ({sql}) WHERE list_contains($kinds, type) "
                       "ORDER BY created_at DESC, kafka_offset DESC LIMIT $limit",
                       {"kinds": kinds, "limit": q.limit}).fetchall()


def routes(console: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        q = query_of(request, console.settings, default_since="1h")
        types = _types(request)
        sources = request.query_params.get("source") or "both"
        ctx: dict[str, Any] = {"title": TITLE, "q": q, "form": q.form, "types": TYPES, "chosen": types,
                               "source": sources, "lake_missing": None, "lake_rows": [], "kafka_rows": []}
        lake_task = None
        if sources in ("both", "lake"):
            lake_task = asyncio.ensure_future(console.blocking(lambda: _lake(console, q, types)))
        if sources in ("both", "kafka"):
            rows, cut, ms, err = await _kafka(console, q, types)
            ctx.update(kafka_rows=rows, kafka_cut=cut, kafka_ms=ms, kafka_error=err)
        if lake_task is not None:
            try:
                ctx["lake_rows"], ctx["lake_ms"] = await lake_task
            except StoreMissingError as exc:
                ctx["lake_missing"] = str(exc)
        return console.render(request, "events.html", ctx)

    async def record(request: Request) -> Response:
        p = request.query_params
        try:
            topic, partition, offset = p["topic"], int(p["partition"]), int(p["offset"])
        except (KeyError, ValueError):
            return console.render(request, "event.html", {"title": "Event", "error": "topic, partition and offset "
                                                          "name an event"}, status_code=400)
        try:
            async with console.kafka.lock:
                _, consumer = await asyncio.wait_for(console.kafka.clients(), 5)
                ev = await read_one(consumer, topic, partition, offset)
        except Exception as exc:
            await console.kafka.close()
            return console.render(request, "event.html", {"title": "Event", "error": f"Kafka: {exc}"}, status_code=503)
        if ev is None:
            return console.render(request, "event.html", {
                "title": "Event", "error": f"no record at {topic} partition {partition} offset {offset} "
                                           "(past the topic's retention? the lake keeps the history)"}, status_code=404)
        env = ev.envelope() or {}
        steps, ms = await console.blocking(lambda: journey(
            env, (topic, partition, offset), lake=console.lake, lake_group=f"{console.settings.topic_prefix}.telemetry",
            alerts=console.alerts, credits=console.credits))
        return console.render(request, "event.html", {
            "title": "Event", "ev": ev, "env": env, "steps": steps, "journey_ms": ms,
            "envelope": orjson.dumps({k: v for k, v in env.items() if k != "payload"}, option=orjson.OPT_INDENT_2).decode(),
            "payload": orjson.dumps(env.get("payload"), option=orjson.OPT_INDENT_2).decode() if env else
            ev.value.decode(errors="replace"),
        })

    return [Route(PATH, page, methods=["GET"]), Route(PATH + "/record", record, methods=["GET"])]
