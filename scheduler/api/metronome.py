"""Metronome v1 REST API: `/v1/jobs`, runs and schedules. Handlers only translate.

Shapes are Metronome's (scheduler/api/metronome_views.py): a job is its JobSpec (plus
embeds), a run is `{id, jobId, status, createdAt, completedAt, tasks}`, the queue lists
run ids per job. A caller that sends `Dockyard-Detail: true` gets dockyard's detail as
well (a run's `trigger`, `reason`, `waiting`, each task's `exitCode`, `host`, `agentUrl`,
`sandbox`...; docs/jobs.md); the CLI does. PUT on a job that does not exist creates it
(the demo and scripts rely on it). `GET /v1/events` is dockyard's jobs event stream (server-sent
events with Metronome's event names), filtered by `jobId`, `runId` and `event_type`.
Each handler takes the request and the scheduler's `Context`; `ROUTES` is the table.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from framework.errors import NotFound
from framework.security.gate import Access
from scheduler.api.common import (Endpoint, body_document, warn, check_privileged, describe, embeds, flag, in_thread,
                                  serve)
from scheduler.api.errors import ApiError, invalid
from scheduler.api.metronome_views import job_view, metronome_queue, queue_view, run_view, schedule_view
from scheduler.api.sandbox import resolve_sandboxes
from scheduler.api.sse import event_stream, requested_types
from scheduler.context import Context
from scheduler.events import encode
from scheduler.jobs.manager import JOB_EVENT_TYPES, JobManager
from scheduler.jobs.specs import (JobSpec, Schedule, parse_job, parse_schedule, privileged_paths, unknown_fields,
                                  unknown_schedule_fields)
from scheduler.run_as import check_run_as, task_user

READ, WRITE = Access.READ, Access.WRITE
DETAIL_HEADER = "Dockyard-Detail"  # "true": dockyard's detail besides Metronome's fields (docs/jobs.md)
UNPLACED = ("PENDING", "TASK_STAGING")


def routes(ctx: Context) -> list[Route]:
    return serve(ROUTES, ctx)


def detail(request: Request) -> bool:
    """Whether the caller asked for dockyard's detail (`Dockyard-Detail: true`)."""
    return request.headers.get(DETAIL_HEADER, "").strip().lower() in ("1", "true", "yes")


def _needs_sandbox(task: dict) -> bool:
    return bool(task.get("agentId")) and not task.get("sandbox") and task.get("status") not in UNPLACED


def with_sandboxes(ctx: Context, jobs: JobManager, event: dict) -> dict:
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


def _check_run_user(request: Request, ctx: Context, spec: JobSpec) -> None:
    check_run_as(request, [("/run/user", task_user(spec.run.user, ctx.config.mesos_user))])


# -- jobs ---------------------------------------------------------------------------------------

@describe("List jobs (embed=activeRuns|schedules|history|historySummary)", query=("embed",))
async def list_jobs(request: Request, ctx: Context) -> Response:
    embed = embeds(request)
    specs = sorted(ctx.jobs.jobs.values(), key=lambda s: s.id)
    return JSONResponse([job_view(ctx.jobs, s, embed, detail(request)) for s in specs])


@describe("Create a job", request=JobSpec, response=JobSpec, status=201)
async def create_job(request: Request, ctx: Context) -> Response:
    document = await body_document(request)
    warn(request, unknown_fields(document))
    spec = parse_job(document)
    check_privileged(request, privileged_paths(spec))
    _check_run_user(request, ctx, spec)
    spec = await in_thread(ctx.jobs.create_job, spec)
    return JSONResponse(job_view(ctx.jobs, spec, set(), detail(request)), status_code=201)


@describe("Show a job", response=JobSpec, query=("embed",))
async def get_job(request: Request, ctx: Context) -> Response:
    spec = ctx.jobs.get_job(request.path_params["job_id"])
    return JSONResponse(job_view(ctx.jobs, spec, embeds(request), detail(request)))


@describe("Replace (or create) a job", request=JobSpec, response=JobSpec)
async def put_job(request: Request, ctx: Context) -> Response:
    job_id = request.path_params["job_id"]
    document = await body_document(request)
    if isinstance(document, dict):
        document.setdefault("id", job_id)
        if document["id"] != job_id:
            raise invalid("/id", f"must match the URL ({job_id})")
    warn(request, unknown_fields(document))
    spec = parse_job(document)
    check_privileged(request, privileged_paths(spec))
    _check_run_user(request, ctx, spec)
    spec = await in_thread(ctx.jobs.put_job, spec)
    return JSONResponse(job_view(ctx.jobs, spec, set(), detail(request)))


@describe("Delete a job (stopCurrentJobRuns=true stops its active runs)", query=("stopCurrentJobRuns",))
async def delete_job(request: Request, ctx: Context) -> Response:
    await in_thread(ctx.jobs.delete_job, request.path_params["job_id"], flag(request, "stopCurrentJobRuns"))
    return JSONResponse({})


# -- runs ---------------------------------------------------------------------------------------

@describe("List a job's active runs (all=true adds the kept finished runs)", query=("all",))
async def list_runs(request: Request, ctx: Context) -> Response:
    job_id = request.path_params["job_id"]
    ctx.jobs.get_job(job_id)
    runs = ctx.jobs.active_runs(job_id)
    if flag(request, "all"):
        runs = ctx.jobs.finished_runs(job_id) + runs
    return JSONResponse([run_view(r, detail(request)) for r in runs])


@describe("Start a run now", status=201)
async def start_run(request: Request, ctx: Context) -> Response:
    run = await in_thread(ctx.jobs.start_run, request.path_params["job_id"])
    return JSONResponse(run_view(run, detail(request)), status_code=201)


@describe("Show a run: task states, exit codes, where the logs are")
async def get_run(request: Request, ctx: Context) -> Response:
    run = ctx.jobs.get_run(request.path_params["job_id"], request.path_params["run_id"])
    if detail(request):
        await in_thread(resolve_sandboxes, ctx, run)
    return JSONResponse(run_view(run, detail(request)))


@describe("Find a run by id alone")
async def find_run(request: Request, ctx: Context) -> Response:
    run = ctx.jobs.find_run(request.path_params["run_id"])
    if detail(request):
        await in_thread(resolve_sandboxes, ctx, run)
    return JSONResponse(run_view(run, detail(request)))


@describe("Stop a run (its tasks are killed; the run ends FAILED)")
async def stop_run(request: Request, ctx: Context) -> Response:
    run = await in_thread(ctx.jobs.stop_run, request.path_params["job_id"], request.path_params["run_id"])
    return JSONResponse(run_view(run, detail(request)))


# -- schedules ----------------------------------------------------------------------------------

@describe("List a job's schedules")
async def list_schedules(request: Request, ctx: Context) -> Response:
    job_id = request.path_params["job_id"]
    spec = ctx.jobs.get_job(job_id)
    return JSONResponse([schedule_view(ctx.jobs, job_id, s, detail(request)) for s in spec.schedules])


@describe("Add a schedule", request=Schedule, response=Schedule, status=201)
async def create_schedule(request: Request, ctx: Context) -> Response:
    job_id = request.path_params["job_id"]
    document = await body_document(request)
    warn(request, unknown_schedule_fields(document))
    schedule = parse_schedule(document)
    await in_thread(ctx.jobs.upsert_schedule, job_id, schedule, True)
    return JSONResponse(schedule_view(ctx.jobs, job_id, schedule, detail(request)), status_code=201)


@describe("Show a schedule", response=Schedule)
async def get_schedule(request: Request, ctx: Context) -> Response:
    job_id, sid = request.path_params["job_id"], request.path_params["schedule_id"]
    for schedule in ctx.jobs.get_job(job_id).schedules:
        if schedule.id == sid:
            return JSONResponse(schedule_view(ctx.jobs, job_id, schedule, detail(request)))
    raise NotFound(f"Schedule '{sid}' of job '{job_id}' does not exist")


@describe("Replace a schedule", request=Schedule, response=Schedule)
async def put_schedule(request: Request, ctx: Context) -> Response:
    job_id, sid = request.path_params["job_id"], request.path_params["schedule_id"]
    document = await body_document(request)
    if isinstance(document, dict):
        document.setdefault("id", sid)
    warn(request, unknown_schedule_fields(document))
    schedule = parse_schedule(document)
    if schedule.id != sid:
        raise invalid("/id", f"must match the URL ({sid})")
    await in_thread(ctx.jobs.upsert_schedule, job_id, schedule, False)
    return JSONResponse(schedule_view(ctx.jobs, job_id, schedule, detail(request)))


@describe("Delete a schedule")
async def delete_schedule(request: Request, ctx: Context) -> Response:
    await in_thread(ctx.jobs.delete_schedule, request.path_params["job_id"], request.path_params["schedule_id"])
    return JSONResponse({})


# -- queue, events ------------------------------------------------------------------------------

@describe("Runs waiting for offers (with Dockyard-Detail: their waiting tasks, and why)")
async def queue(request: Request, ctx: Context) -> Response:
    return JSONResponse(queue_view(ctx.jobs) if detail(request) else metronome_queue(ctx.jobs))


@describe("Server-sent events about jobs and runs (`jobId`, `runId`, `event_type` filter them)",
          query=("jobId", "runId", "event_type"))
async def events(request: Request, ctx: Context) -> Response:
    """Server-sent events about jobs and runs (`jobId`, `runId`, `event_type` filter them)."""
    types = requested_types(request)
    unknown = sorted(set(types) - JOB_EVENT_TYPES)
    if unknown:
        raise ApiError(400, f"Unknown event type(s): {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(JOB_EVENT_TYPES))}")
    job_id = request.query_params.get("jobId")
    run_id = request.query_params.get("runId")

    def match(event: dict) -> bool:
        return (job_id is None or event.get("jobId") == job_id) and (run_id is None or event.get("runId") == run_id)

    async def with_sandbox(event: dict, data: bytes) -> tuple[dict, bytes]:
        if event["eventType"].startswith("job_run_"):
            filled = await in_thread(with_sandboxes, ctx, ctx.jobs, event)
            if filled is not event:
                return filled, encode(filled)
        return event, data

    return event_stream(request, ctx.jobs.events, types, match=match, refine=with_sandbox)


JOB = "/v1/jobs/{job_id}"
ROUTES = (
    Endpoint("/v1/jobs", list_jobs, ("GET",), READ),
    Endpoint("/v1/jobs", create_job, ("POST",), WRITE),
    Endpoint(JOB, get_job, ("GET",), READ),
    Endpoint(JOB, put_job, ("PUT",), WRITE),
    Endpoint(JOB, delete_job, ("DELETE",), WRITE),
    Endpoint(JOB + "/runs", list_runs, ("GET",), READ),
    Endpoint(JOB + "/runs", start_run, ("POST",), WRITE),
    Endpoint(JOB + "/runs/{run_id}", get_run, ("GET",), READ),
    Endpoint(JOB + "/runs/{run_id}/actions/stop", stop_run, ("POST",), WRITE),
    Endpoint(JOB + "/schedules", list_schedules, ("GET",), READ),
    Endpoint(JOB + "/schedules", create_schedule, ("POST",), WRITE),
    Endpoint(JOB + "/schedules/{schedule_id}", get_schedule, ("GET",), READ),
    Endpoint(JOB + "/schedules/{schedule_id}", put_schedule, ("PUT",), WRITE),
    Endpoint(JOB + "/schedules/{schedule_id}", delete_schedule, ("DELETE",), WRITE),
    Endpoint("/v1/runs/{run_id}", find_run, ("GET",), READ),
    Endpoint("/v1/queue", queue, ("GET",), READ),
    Endpoint("/v1/events", events, ("GET",), READ),
)
