"""DLQ: what was dead-lettered and why, one dead letter's headers and payload, counts, and redrive.

Everything goes through ``consumers.dlq`` — the functions of ``tpipe dlq``: ``read_dlq`` for the list
(the newest ``limit`` matching the filters) and one record, ``dlq_stats``' tally (``DlqCounts``) for the
counts of every dead letter matching, ``read_redriven`` for what was redriven already, ``plan_redrive`` and ``execute_redrive`` for a
redrive. A redrive is two POSTs, each with the CSRF token and logged on ``tpipe.console.audit``: the
ticked dead letters (or every one matching the filters) and a target start a dry run, whose page
shows what would be sent and what skipped (redriven before, or a webhook body without a receiver);
confirming sends exactly the dead letters that dry run found to send, as a background job with a
progress bar. Each redrive is recorded in ``<prefix>.dlq.redriven``: the same selection again sends
nothing unless "send again" is ticked. The form is ``tpipe.console.dlq_form``."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from consumers.dlq.reader import DlqFilter, DlqRecord, parse_position, read_dlq
from consumers.dlq.redrive import RedrivePlan, execute_redrive, plan_redrive, read_redriven
from consumers.dlq.stats import DlqCounts, DlqStats
from consumers.errors import UsageError
from schemas.topics import dlq_topic
from tpipe.console.access import audit, checked_form
from tpipe.console.app import Console
from tpipe.console.dlq_form import RedriveSpec, filter_of, redrive_spec_of
from tpipe.console.jobs import DONE, BusyError, Job

TITLE = "DLQ"
PATH = "/dlq"
DRY_RUN, RUN = "redrive dry run", "redrive"
WORKERS = ("receiver", "telemetry", "alerts", "credits")
KAFKA_TIMEOUT_S = 30.0


def _read(console: Console, flt: DlqFilter, limit: int) -> tuple[list[DlqRecord], DlqStats, dict[str, Any]]:
    """The newest ``limit`` dead letters matching ``flt``, the counts of all of them, the redrive log: the
    DLQ and the log read once each (``read_dlq``, ``read_redriven``), counted by ``dlq_stats``' own tally."""
    async def read() -> tuple[list[DlqRecord], dict[str, Any]]:
        s = console.settings
        return await asyncio.wait_for(asyncio.gather(read_dlq(s, flt), read_redriven(s)), KAFKA_TIMEOUT_S)

    records, marks = asyncio.run(read())
    counts = DlqCounts("hour", marks)
    for r in records:
        counts.add(r)
    return records[-limit:], counts.stats(), marks


def _redriven(r: DlqRecord, marks: dict[str, Any]) -> dict[str, Any] | None:
    mark = marks.get(r.position)
    return mark if mark is not None and mark.get("dlq_at_ms") == r.at_ms else None


def _dry_run(console: Console, spec: RedriveSpec) -> Any:
    async def run(job: Job) -> RedrivePlan:
        to_url_shown = spec.url_sink().shown_url if spec.url is not None else None
        return await plan_redrive(console.settings, spec.flt, to_topic=spec.to_topic, to_url_shown=to_url_shown,
                                  force=spec.force)

    return run


def _send(console: Console, spec: RedriveSpec) -> Any:
    async def run(job: Job) -> RedrivePlan:
        sink = spec.url_sink() if spec.url is not None else None
        plan = await plan_redrive(console.settings, spec.flt, to_topic=spec.to_topic,
                                  to_url_shown=sink.shown_url if sink else None, force=spec.force)
        job.total = len(plan.to_send)
        if not plan.to_send:
            plan.sent = 0
            return plan
        return await execute_redrive(console.settings, plan, url_sink=sink, show_progress=False,
                                     on_progress=job.progress)

    return run


def routes(console: Console) -> list[Route]:
    settings = console.settings

    async def page(request: Request) -> Response:
        params = request.query_params
        try:
            limit = max(1, min(int(params.get("limit") or settings.console_query_limit),
                               settings.console_query_limit))
        except ValueError:
            limit = settings.console_query_limit
        ctx: dict[str, Any] = {"title": TITLE, "workers": WORKERS, "limit": limit, "error": None,
                               "dlq": dlq_topic(settings.topic_prefix), "receivers": settings.webhook_urls(),
                               "token_configured": settings.replay_token is not None, "rows": [],
                               "jobs": console.jobs.recent(DRY_RUN, RUN)}
        try:
            flt, ctx["form"] = filter_of(params)
        except UsageError as exc:
            flt, ctx["form"] = DlqFilter(), {**params}
            ctx["error"] = str(exc)
        try:
            (records, stats, marks), ms = await console.blocking(lambda: _read(console, flt, limit))
        except Exception as exc:  # Kafka unreachable, or slower than the timeout
            return console.render(request, "dlq.html", {**ctx, "kafka_error": f"Kafka: {type(exc).__name__}: "
                                                                               f"{exc}"[:300]})
        ctx.update(kafka_error=None, stats=stats, query_ms=ms,
                   rows=[(r, _redriven(r, marks)) for r in reversed(records)])  # newest first
        return console.render(request, "dlq.html", ctx)

    async def record(request: Request) -> Response:
        pos = parse_position(request.query_params.get("pos") or "")
        if pos is None:
            raise HTTPException(400, "pos=PARTITION:OFFSET names a dead letter")

        async def read() -> tuple[list[DlqRecord], dict[str, Any]]:
            return await asyncio.wait_for(asyncio.gather(
                read_dlq(settings, DlqFilter(positions=frozenset([pos]))), read_redriven(settings)), KAFKA_TIMEOUT_S)

        try:
            (found, marks), ms = await console.blocking(lambda: asyncio.run(read()))
        except Exception as exc:  # Kafka unreachable, or slower than the timeout
            raise HTTPException(503, f"Kafka: {type(exc).__name__}: {exc}"[:300]) from None
        if not found:
            raise HTTPException(404, f"no dead letter {pos[0]}:{pos[1]} in {dlq_topic(settings.topic_prefix)}")
        r = found[0]
        value = r.payload()
        return console.render(request, "dlq_record.html", {
            "title": TITLE, "r": r, "row": r.row(), "query_ms": ms, "redriven": _redriven(r, marks),
            "headers": sorted(r.header.items()), "receivers": settings.webhook_urls(),
            "token_configured": settings.replay_token is not None,
            "payload": value if isinstance(value, str) or value is None else
            orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode(),
        })

    async def redrive(request: Request) -> Response:
        form = await checked_form(request)
        try:
            spec = redrive_spec_of(form, settings)
            job = console.jobs.start(DRY_RUN, request.state.user, _dry_run(console, spec), spec=spec)
        except (UsageError, BusyError) as exc:
            raise HTTPException(409 if isinstance(exc, BusyError) else 400, str(exc)) from None
        audit(request, "redrive dry run", job=job.id, target=spec.shown, force=spec.force,
              selection=form.get("scope") or "selected", positions=len(spec.flt.positions))
        return RedirectResponse(f"{PATH}/jobs/{job.id}", status_code=303)

    def job_of(request: Request) -> Job:
        job = console.jobs.get(request.path_params["job_id"], DRY_RUN, RUN)
        if job is None:
            raise HTTPException(404, "no such redrive (the console keeps its recent jobs until it restarts)")
        return job

    async def job_page(request: Request) -> Response:
        job = job_of(request)
        spec: RedriveSpec = job.spec
        return console.render(request, "dlq_job.html", {"title": TITLE, "job": job, "dry_run": job.kind == DRY_RUN,
                                                        "plan": job.result, "target": spec.shown})

    async def send(request: Request) -> Response:
        await checked_form(request)
        dry = job_of(request)
        if dry.kind != DRY_RUN or dry.state != DONE:
            raise HTTPException(409, "only a finished dry run can be confirmed")
        plan: RedrivePlan = dry.result
        positions = frozenset((i.record.partition, i.record.offset) for i in plan.to_send)
        if not positions:
            raise HTTPException(409, "that dry run found nothing to send")
        spec: RedriveSpec = dry.spec.only(positions)
        try:
            job_id, started = console.jobs.follow(dry, RUN, request.state.user, _send(console, spec), spec=spec)
        except BusyError as exc:
            raise HTTPException(409, str(exc)) from None
        if started:  # else confirmed already (a second click, a reload): show that redrive
            audit(request, "redrive", job=job_id, dry_run=dry.id, target=spec.shown, records=len(positions),
                  dead_letters=sorted(f"{p}:{o}" for p, o in positions)[:100])
        return RedirectResponse(f"{PATH}/jobs/{job_id}", status_code=303)

    return [Route(PATH, page, methods=["GET"]), Route(PATH + "/record", record, methods=["GET"]),
            Route(PATH + "/redrive", redrive, methods=["POST"]),
            Route(PATH + "/jobs/{job_id}", job_page, methods=["GET"]),
            Route(PATH + "/jobs/{job_id}/run", send, methods=["POST"])]
