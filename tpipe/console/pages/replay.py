"""Replay: send a window of history again — from Kafka (``tpipe replay``) or the lake (``tpipe lake
replay``) — to a topic, a file or a webhook URL, after seeing what would be sent.

Two POSTs, each with the CSRF token and logged on ``tpipe.console.audit``: the form starts a dry run
(the same ``plan_kafka`` / ``replay_lake(sink=None)`` as the commands: the offset ranges, the records
read and the distinct events, or the lake tables' rows), whose page then offers to send exactly that
selection; sending runs ``replay_kafka`` / ``replay_lake`` as a background job whose page shows a live
progress bar. The form is ``tpipe.console.replay_form`` (files only under ``--console-replay-dir``,
a URL's token never shown)."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from consumers.errors import ReplayError
from consumers.lake.readonly import open_lake
from consumers.replay.engine import describe_selection, plan_kafka, replay_kafka
from consumers.replay.lake_cli import replay_lake
from schemas.event_types import EventType
from tpipe.console.access import audit, checked_form
from tpipe.console.app import Console
from tpipe.console.jobs import DONE, BusyError, Job
from tpipe.console.replay_form import ReplaySpec, file_in, spec_of

TITLE = "Replay"
PATH = "/replay"
DRY_RUN, RUN = "replay dry run", "replay"


def _dry_run(console: Console, spec: ReplaySpec) -> Any:
    async def run(job: Job) -> Any:
        if spec.source == "kafka":
            return await plan_kafka(console.settings, spec.selection, on_progress=job.progress)
        open_lake(console.settings)  # a missing lake is the job's error, nothing is created
        return await replay_lake(console.settings, spec.selection, None, show_progress=False,
                                 on_progress=job.progress)

    return run


def _send(console: Console, spec: ReplaySpec) -> Any:
    async def run(job: Job) -> Any:
        sink = spec.target.sink(console.settings)
        if spec.source == "kafka":
            return await replay_kafka(console.settings, spec.selection, sink, rate=spec.rate, show_progress=False,
                                      on_progress=job.progress)
        open_lake(console.settings)
        return await replay_lake(console.settings, spec.selection, sink, rate=spec.rate, show_progress=False,
                                 on_progress=job.progress)

    return run


def routes(console: Console) -> list[Route]:
    settings = console.settings

    def form_page(request: Request, form: dict[str, Any] | None = None, error: str | None = None,
                  status_code: int = 200) -> Response:
        return console.render(request, "replay.html", {
            "title": TITLE, "types": [t.value for t in EventType], "form": form or {"source": "kafka",
                                                                                    "target": "file"},
            "error": error, "replay_dir": settings.console_replay_dir, "jobs": console.jobs.recent(DRY_RUN, RUN),
            "token_configured": settings.replay_token is not None,
        }, status_code=status_code)

    async def page(request: Request) -> Response:
        return form_page(request)

    async def plan(request: Request) -> Response:
        form = await checked_form(request)
        typed: dict[str, Any] = {k: str(v) for k, v in form.items() if k not in ("csrf", "token")}
        typed["types"] = form.getlist("types")
        try:
            spec = spec_of(form, settings)
            job = console.jobs.start(DRY_RUN, request.state.user, _dry_run(console, spec), spec=spec)
        except ReplayError as exc:
            return form_page(request, typed, str(exc), status_code=400)
        except BusyError as exc:
            return form_page(request, typed, str(exc), status_code=409)
        audit(request, "replay dry run", job=job.id, source=spec.source, target=spec.target.shown,
              types=[t.value for t in spec.selection.types], vins=sorted(spec.selection.vins),
              window=describe_selection(spec.selection, slack=False).splitlines()[0])
        return RedirectResponse(f"{PATH}/jobs/{job.id}", status_code=303)

    def job_of(request: Request) -> Job:
        job = console.jobs.get(request.path_params["job_id"], DRY_RUN, RUN)
        if job is None:
            raise HTTPException(404, "no such replay (the console keeps its recent jobs until it restarts)")
        return job

    async def job_page(request: Request) -> Response:
        job = job_of(request)
        spec: ReplaySpec = job.spec
        return console.render(request, "replay_job.html", {
            "title": TITLE, "job": job, "dry_run": job.kind == DRY_RUN, "plan": job.result, "source": spec.source,
            "target": spec.target.shown, "file": spec.target.value.rsplit("/", 1)[-1]
            if spec.target.kind == "file" else None, "selection": describe_selection(spec.selection,
                                                                                     slack=spec.source == "kafka"),
        })

    async def send(request: Request) -> Response:
        await checked_form(request)
        dry = job_of(request)
        if dry.kind != DRY_RUN or dry.state != DONE:
            raise HTTPException(409, "only a finished dry run can be sent")
        spec: ReplaySpec = dry.spec
        try:
            job_id, started = console.jobs.follow(dry, RUN, request.state.user, _send(console, spec), spec=spec)
        except BusyError as exc:
            raise HTTPException(409, str(exc)) from None
        if started:  # else sent already (a second click, a reload): show that replay
            audit(request, "replay started", job=job_id, dry_run=dry.id, source=spec.source,
                  target=spec.target.shown, events=getattr(dry.result, "events", None))
        return RedirectResponse(f"{PATH}/jobs/{job_id}", status_code=303)

    async def download(request: Request) -> Response:
        try:
            path = file_in(settings.console_replay_dir, request.path_params["name"])
        except ReplayError as exc:
            raise HTTPException(404, str(exc)) from None
        if not path.is_file():
            raise HTTPException(404, f"no file {path}")
        return FileResponse(path, media_type="application/x-ndjson", filename=path.name)

    return [Route(PATH, page, methods=["GET"]), Route(PATH + "/plan", plan, methods=["POST"]),
            Route(PATH + "/jobs/{job_id}", job_page, methods=["GET"]),
            Route(PATH + "/jobs/{job_id}/run", send, methods=["POST"]),
            Route(PATH + "/files/{name}", download, methods=["GET"])]
