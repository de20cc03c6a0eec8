"""Metronome v1 REST API: `/v1/jobs`, runs and schedules. Handlers only translate.

Shapes follow Metronome's RAML: a job is its JobSpec (plus embeds), a run is
`{id, jobId, status, createdAt, completedAt, tasks}`; dockyard adds fields a
client may ignore (`waiting`, `reason`, task `exitCode`, `agentUrl`, `sandbox`).
PUT on a job that does not exist creates it (the demo and scripts rely on it).
`GET /v1/events` is dockyard's jobs event stream (server-sent events with
Metronome's event names), filtered by `jobId`, `runId` and `event_type`.
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from framework.security.gate import Access
from scheduler.api.common import (ApiError, EventStream, api_route, body_document, check_privileged, describe,
                                  embeds, error_response, flag, guard, in_thread, request_limits, sse_frame)
from scheduler.api.sandbox import resolve_sandboxes
from scheduler.events import encode, marathon_time
from scheduler.jobs.manager import JOB_EVENT_TYPES, JobManager, NotFound
from scheduler.jobs.specs import JobSpec, Schedule, parse_job, parse_schedule, privileged_paths
from scheduler.run_as import check_run_as, task_user


def job_view(jobs: JobManager, spec: JobSpec, embed: set[str]) -> dict:
    out = spec.dump()
    out.setdefault("schedules", [])
    out["schedules"] = [jobs.schedule_view(spec.id, s) for s in spec.schedules]
    if "activeRuns" in embed:
        out["activeRuns"] = [r.to_api() for r in jobs.active_runs(spec.id)]
    if "history" in embed:
        out["history"] = jobs.history(spec.id)
    if "historySummary" in embed:
        out["historySummary"] = jobs.history_summary(spec.id)
    return out


KEEPALIVE_SECONDS = 15.0
READ, WRITE = Access.READ, Access.WRITE
UNPLACED = ("PENDING", "TASK_STAGING")


def _needs_sandbox(task: dict) -> bool:
    return bool(task.get("agentId")) and not task.get("sandbox") and task.get("status") not in UNPLACED


def with_sandboxes(ctx: Any, jobs: JobManager, event: dict) -> dict:
    """The event with its tasks' sandboxes filled in where they can be found (a copy; may block).

    Statuses do not say where a task's files are; the agent does (`resolve_sandboxes`).
    Done here, per listener, so that the status path never waits on an agent."""
    run_view = event.get("jobRun") or {}
    tasks = [event["task"]] if "task" in event else list(run_view.get("tasks") or [])
    if not any(_needs_sandbox(t) for t in tasks):
        return event
    try:
        run = jobs.find_run(event["runId"])
    except NotFound:
        return event
    resolve_sandboxes(ctx, run)

    def filled(task: dict) -> dict:
        live = run.task(task["id"]) if _needs_sandbox(task) else None
        if live is None or not live.sandbox:
            return task
        return {**task, "sandbox": live.sandbox, "agentUrl": live.agent_url or task.get("agentUrl")}

    out = dict(event)
    if "task" in event:
        out["task"] = filled(event["task"])
    if run_view.get("tasks"):
        out["jobRun"] = {**run_view, "tasks": [filled(t) for t in run_view["tasks"]]}
    return out


def routes(ctx: Any) -> list[Route]:
    jobs: JobManager = ctx.jobs

    @guard
    @describe("List jobs (embed=activeRuns|schedules|history|historySummary)", query=("embed",))
    async def list_jobs(request: Request) -> Response:
        embed = embeds(request)
        specs = sorted(jobs.jobs.values(), key=lambda s: s.id)
        return JSONResponse([job_view(jobs, s, embed) for s in specs])

    @guard
    @describe("Create a job", request=JobSpec, response=JobSpec, status=201)
    async def create_job(request: Request) -> Response:
        spec = parse_job(await body_document(request))
        check_privileged(request, privileged_paths(spec))
        check_run_as(request, [("/run/user", task_user(spec.run.user, ctx.config.mesos_user))])
        spec = await in_thread(jobs.create_job, spec)
        return JSONResponse(job_view(jobs, spec, set()), status_code=201)

    @guard
    @describe("Show a job", response=JobSpec, query=("embed",))
    async def get_job(request: Request) -> Response:
        spec = jobs.get_job(request.path_params["job_id"])
        return JSONResponse(job_view(jobs, spec, embeds(request)))

    @guard
    @describe("Replace (or create) a job", request=JobSpec, response=JobSpec)
    async def put_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        document = await body_document(request)
        if isinstance(document, dict):
            document.setdefault("id", job_id)
            if document["id"] != job_id:
                raise ApiError(422, "Object is not valid",
                               [{"path": "/id", "errors": [f"must match the URL ({job_id})"]}])
        spec = parse_job(document)
        check_privileged(request, privileged_paths(spec))
        check_run_as(request, [("/run/user", task_user(spec.run.user, ctx.config.mesos_user))])
        spec = await in_thread(jobs.put_job, spec)
        return JSONResponse(job_view(jobs, spec, set()))

    @guard
    @describe("Delete a job (stopCurrentJobRuns=true stops its active runs)", query=("stopCurrentJobRuns",))
    async def delete_job(request: Request) -> Response:
        await in_thread(jobs.delete_job, request.path_params["job_id"], flag(request, "stopCurrentJobRuns"))
        return JSONResponse({})

    @guard
    @describe("List a job's active runs (all=true adds the kept finished runs)", query=("all",))
    async def list_runs(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        jobs.get_job(job_id)
        runs = jobs.active_runs(job_id)
        if flag(request, "all"):
            runs = jobs.finished_runs(job_id) + runs
        return JSONResponse([r.to_api() for r in runs])

    @guard
    @describe("Start a run now", status=201)
    async def start_run(request: Request) -> Response:
        run = await in_thread(jobs.start_run, request.path_params["job_id"])
        return JSONResponse(run.to_api(), status_code=201)

    @guard
    @describe("Show a run: task states, exit codes, where the logs are")
    async def get_run(request: Request) -> Response:
        run = jobs.get_run(request.path_params["job_id"], request.path_params["run_id"])
        await in_thread(resolve_sandboxes, ctx, run)
        return JSONResponse(run.to_api())

    @guard
    @describe("Find a run by id alone")
    async def find_run(request: Request) -> Response:
        run = jobs.find_run(request.path_params["run_id"])
        await in_thread(resolve_sandboxes, ctx, run)
        return JSONResponse(run.to_api())

    @guard
    @describe("Stop a run (its tasks are killed; the run ends FAILED)")
    async def stop_run(request: Request) -> Response:
        run = await in_thread(jobs.stop_run, request.path_params["job_id"], request.path_params["run_id"])
        return JSONResponse(run.to_api())

    @guard
    @describe("List a job's schedules")
    async def list_schedules(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        spec = jobs.get_job(job_id)
        return JSONResponse([jobs.schedule_view(job_id, s) for s in spec.schedules])

    @guard
    @describe("Add a schedule", request=Schedule, response=Schedule, status=201)
    async def create_schedule(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        schedule = parse_schedule(await body_document(request))
        await in_thread(jobs.upsert_schedule, job_id, schedule, True)
        return JSONResponse(jobs.schedule_view(job_id, schedule), status_code=201)

    @guard
    @describe("Show a schedule", response=Schedule)
    async def get_schedule(request: Request) -> Response:
        job_id, sid = request.path_params["job_id"], request.path_params["schedule_id"]
        for schedule in jobs.get_job(job_id).schedules:
            if schedule.id == sid:
                return JSONResponse(jobs.schedule_view(job_id, schedule))
        raise ApiError(404, f"Schedule '{sid}' of job '{job_id}' does not exist")

    @guard
    @describe("Replace a schedule", request=Schedule, response=Schedule)
    async def put_schedule(request: Request) -> Response:
        job_id, sid = request.path_params["job_id"], request.path_params["schedule_id"]
        document = await body_document(request)
        if isinstance(document, dict):
            document.setdefault("id", sid)
        schedule = parse_schedule(document)
        if schedule.id != sid:
            raise ApiError(422, "Object is not valid", [{"path": "/id", "errors": [f"must match the URL ({sid})"]}])
        await in_thread(jobs.upsert_schedule, job_id, schedule, False)
        return JSONResponse(jobs.schedule_view(job_id, schedule))

    @guard
    @describe("Delete a schedule")
    async def delete_schedule(request: Request) -> Response:
        await in_thread(jobs.delete_schedule, request.path_params["job_id"], request.path_params["schedule_id"])
        return JSONResponse({})

    @guard
    @describe("Runs waiting for offers, and why")
    async def queue(request: Request) -> Response:
        out = []
        for run in jobs.active_runs():
            pending = [t.id for t in run.tasks if t.status == "PENDING"]
            if pending:
                out.append({"jobId": run.job_id, "runId": run.id, "tasks": pending, "waiting": run.waiting})
        return JSONResponse(out)

    @describe("Server-sent events about jobs and runs (`jobId`, `runId`, `event_type` filter them)",
              query=("jobId", "runId", "event_type"))
    async def events(request: Request) -> Response:
        """Server-sent events about jobs and runs (`jobId`, `runId`, `event_type` filter them)."""
        types = [t for v in request.query_params.getlist("event_type") for t in v.split(",") if t]
        unknown = sorted(set(types) - JOB_EVENT_TYPES)
        if unknown:
            return error_response(400, f"Unknown event type(s): {', '.join(unknown)}; known: "
                                       f"{', '.join(sorted(JOB_EVENT_TYPES))}")
        job_id = request.query_params.get("jobId")
        run_id = request.query_params.get("runId")

        def match(event: dict) -> bool:
            return (job_id is None or event.get("jobId") == job_id) and \
                (run_id is None or event.get("runId") == run_id)

        subscription = jobs.events.subscribe(types or None, match=match,
                                             max_bytes=request_limits(request).event_stream_bytes)
        client = request.client.host if request.client else ""

        async def stream() -> AsyncIterator[bytes]:
            try:
                attached = {"eventType": "event_stream_attached", "timestamp": marathon_time(),
                            "remoteAddress": client}
                yield f"event: event_stream_attached\ndata: {json.dumps(attached)}\n\n".encode()
                while True:
                    item = await subscription.aget_encoded(KEEPALIVE_SECONDS)
                    if subscription.overflowed:
                        return  # too slow a reader: the stream ends (EventStream says why)
                    if item is None:
                        yield b":\n\n"  # keep-alive (an SSE comment)
                        continue
                    event, data = item
                    if event["eventType"].startswith("job_run_"):
                        filled = await in_thread(with_sandboxes, ctx, jobs, event)
                        if filled is not event:
                            event, data = filled, encode(filled)
                    for piece in sse_frame(event["eventType"], data):
                        yield piece
            finally:
                subscription.close()

        return EventStream(stream())

    job = "/v1/jobs/{job_id}"
    return [
        api_route("/v1/jobs", list_jobs, ["GET"], READ),
        api_route("/v1/jobs", create_job, ["POST"], WRITE),
        api_route(job, get_job, ["GET"], READ),
        api_route(job, put_job, ["PUT"], WRITE),
        api_route(job, delete_job, ["DELETE"], WRITE),
        api_route(job + "/runs", list_runs, ["GET"], READ),
        api_route(job + "/runs", start_run, ["POST"], WRITE),
        api_route(job + "/runs/{run_id}", get_run, ["GET"], READ),
        api_route(job + "/runs/{run_id}/actions/stop", stop_run, ["POST"], WRITE),
        api_route(job + "/schedules", list_schedules, ["GET"], READ),
        api_route(job + "/schedules", create_schedule, ["POST"], WRITE),
        api_route(job + "/schedules/{schedule_id}", get_schedule, ["GET"], READ),
        api_route(job + "/schedules/{schedule_id}", put_schedule, ["PUT"], WRITE),
        api_route(job + "/schedules/{schedule_id}", delete_schedule, ["DELETE"], WRITE),
        api_route("/v1/runs/{run_id}", find_run, ["GET"], READ),
        api_route("/v1/queue", queue, ["GET"], READ),
        api_route("/v1/events", events, ["GET"], READ),
    ]
