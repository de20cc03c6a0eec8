"""The UI's pages (GET): each reads the domain (scheduler/ui/model.py) or Mesos as the caller
(scheduler/ui/cluster.py) and renders a template; a live region alone when htmx asks for it."""
from __future__ import annotations

import re
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from framework.errors import NotFound
from framework.security.gate import principal_name
from scheduler.api import marathon_views, metronome_views
from scheduler.api.common import in_thread
from scheduler.api.sandbox import sandbox_finder, task_sandbox
from scheduler.ui import cluster, forms, guard, model
from scheduler.ui.render import SECURITY_HEADERS, page
from scheduler.ui.stream import recent_events


# What a finished action says on the page it lands on (`?done=`): fixed texts, so a link
# cannot make a page say anything else.
DONE = {
    "created": "Deploying the new app.", "scaled": "Scaling.", "restarted": "Restarting every instance.",
    "suspended": "Suspending: scaling to 0.", "rolled-back": "Rolling back to the chosen version.",
    "deleted": "Deleting the app.", "run-started": "Run started.", "run-stopped": "Stopping the run.",
    "job-created": "Job created.", "job-deleted": "Job deleted.", "deployment-rolled-back": "Rolling the deployment back.",
    "deployment-stopped": "Deployment stopped where it was.",
}


def common(request: Request, ctx: Any, section: str) -> dict[str, Any]:
    """What every page's layout shows: who is looking, whether they may change things, the form token."""
    return {"section": section, "user": principal_name(request), "can_change": guard.may_change(request),
            "csrf": guard.form_token(request, ctx), "flash": DONE.get(request.query_params.get("done", ""), ""),
            "flash_deployment": request.query_params.get("deployment", "")[:64]}


def show(request: Request, ctx: Any, section: str, template: str, values: Mapping[str, Any], *,
         status: int = 200, parts: Mapping[str, str] | None = None) -> Response:
    return page(request, template, {**common(request, ctx, section), **values}, status=status, parts=parts)


def message(request: Request, ctx: Any, status: int, title: str, text: str) -> Response:
    """A page that only says something went wrong (404, a refused form, a failure). A live
    region's refresh gets the same words as its new content, with 200: htmx swaps only
    successful answers, and the region should say the app or job is gone."""
    if request.headers.get("hx-request"):
        return page(request, "message_part.html", {"title": title, "text": text})
    return show(request, ctx, "", "message.html", {"title": title, "text": text}, status=status)


# -- overview ---------------------------------------------------------------------------------------

async def browser_root(request: Request, ctx: Any) -> Response:
    """`/`: browsers go to the UI; anything else gets the API's 404."""
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui/", status_code=302)
    return JSONResponse({"message": "Not Found: GET /; the API is under /v2 and /v1, the UI at /ui/"},
                        status_code=404)


async def ui_root(request: Request, ctx: Any) -> Response:
    return RedirectResponse("/ui/", status_code=307)


async def overview(request: Request, ctx: Any) -> Response:
    rows = await in_thread(model.app_rows, ctx)
    jobs = await in_thread(model.job_rows, ctx)
    values = {"groups": model.by_status(rows), "app_count": len(rows), "jobs": jobs,
              "cluster": await cluster.cluster_summary(request, ctx), "events": recent_events(ctx).latest(20),
              "framework_id": ctx.core.framework_id}
    return show(request, ctx, "overview", "overview.html", values, parts={"overview-live": "overview_live.html"})


# -- apps -------------------------------------------------------------------------------------------

async def apps(request: Request, ctx: Any) -> Response:
    filters = {key: request.query_params.get(key, "").strip()[:256] for key in ("id", "label", "status")}
    rows = await in_thread(model.app_rows, ctx, id_part=filters["id"], label=filters["label"],
                           status=filters["status"] if filters["status"] in model.STATUSES else "")
    return show(request, ctx, "apps", "apps.html", {"rows": rows, "filters": filters, "statuses": model.STATUSES},
                parts={"apps-live": "apps_table.html"})


async def app(request: Request, ctx: Any, *, error: str = "", details: list[dict] | None = None,
              status: int = 200) -> Response:
    app_id = "/" + request.path_params["app_id"].strip("/")
    try:
        detail = await in_thread(model.app_detail, ctx, app_id)
    except NotFound as missing:
        return message(request, ctx, 404, "No such app", str(missing))
    versions = detail["versions"]
    older = request.query_params.get("from") or (versions[1] if len(versions) > 1 else "")
    newer = request.query_params.get("to") or (versions[0] if versions else "")
    diff = await in_thread(model.version_diff, ctx, app_id, older, newer) if older and newer else []
    values = {**detail, "app_id": app_id, "diff": diff, "older": older, "newer": newer, "error": error,
              "details": details or []}
    return show(request, ctx, "apps", "app.html", values, status=status, parts={"app-live": "app_live.html"})


async def new_app(request: Request, ctx: Any) -> Response:
    return show(request, ctx, "apps", "app_new.html", forms.app_form_values(forms.APP_DEFAULTS))


# -- tasks ------------------------------------------------------------------------------------------

def _record(ctx: Any, task_id: str) -> Any:
    record = ctx.core.get(task_id)
    if record is None:
        raise NotFound(f"Task '{task_id}' is not known (ended long ago, or never ours)")
    return record


def _sandbox(ctx: Any, record: Any) -> tuple[str, str]:
    """(agent URL, the task's sandbox directory on it); Unreadable saying why not (blocks)."""
    agent = ctx.core.agent(record.agent_id) if record.agent_id else None
    url = (agent or {}).get("url")
    if not url:
        raise cluster.Unreadable("the task has not reached an agent" if not record.agent_id
                                 else "the task's agent is not known to this scheduler (any more)")
    directory = sandbox_finder(ctx).executor_directory(url, ctx.core.framework_id, record.task_id)
    sandbox = task_sandbox(directory, record.sandbox) if directory else None
    if sandbox is None:
        raise cluster.Unreadable(f"the agent at {url} does not show this task's sandbox (yet)")
    return url, sandbox


async def task(request: Request, ctx: Any) -> Response:
    task_id = request.path_params["task_id"]
    try:
        record = _record(ctx, task_id)
    except NotFound as missing:
        return message(request, ctx, 404, "No such task", str(missing))
    owner = model.task_owner(record)
    values: dict[str, Any] = {"record": record, "owner": owner, "logs": [], "listing": [], "files_error": "",
                              "path": request.query_params.get("path", ""), "view": None, "run_task": None}
    if owner["kind"] == "app":
        values["view"] = marathon_views.task_view(ctx.services, record)
    elif owner["kind"] == "job":
        try:
            run = ctx.jobs.find_run(owner["run"])
            found = run.task(task_id)
            values["run_task"] = found.to_api() if found is not None else None
        except NotFound:
            pass
    try:
        url, sandbox = await in_thread(_sandbox, ctx, record)
        for name in ("stdout", "stderr"):
            text, start, end = await cluster.read(request, ctx, url, f"{sandbox}/{name}", None)
            values["logs"].append({"name": name, "text": text, "start": start, "end": end})
        values["listing"] = await cluster.browse(request, ctx, url, cluster.sandbox_path(sandbox, values["path"]))
    except (cluster.Unreadable, ValueError) as error:
        values["files_error"] = str(error)
    here = values["path"].strip("/")
    for entry in values["listing"]:  # each entry's path below the sandbox, for links
        entry["relative"] = "/".join(p for p in (here, str(entry.get("path", "")).rsplit("/", 1)[-1]) if p)
    return show(request, ctx, "apps" if owner["kind"] == "app" else "jobs", "task.html", values,
                parts={"task-live": "task_live.html"})


async def task_log(request: Request, ctx: Any) -> Response:
    """`{"data", "start", "end"}` of stdout or stderr from `offset` (the tail without one), for
    the page's live follow."""
    name = request.query_params.get("file", "stdout")
    if name not in ("stdout", "stderr"):
        return JSONResponse({"error": "file is stdout or stderr"}, status_code=400, headers=SECURITY_HEADERS)
    try:
        offset = int(request.query_params["offset"]) if "offset" in request.query_params else None
        if offset is not None and offset < 0:
            raise ValueError
    except ValueError:
        return JSONResponse({"error": "offset is a byte count"}, status_code=400, headers=SECURITY_HEADERS)
    try:
        record = _record(ctx, request.path_params["task_id"])
        url, sandbox = await in_thread(_sandbox, ctx, record)
        text, start, end = await cluster.read(request, ctx, url, f"{sandbox}/{name}", offset)
    except NotFound as missing:
        return JSONResponse({"error": str(missing)}, status_code=404, headers=SECURITY_HEADERS)
    except cluster.Unreadable as error:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=SECURITY_HEADERS)
    return JSONResponse({"data": text, "start": start, "end": end, "terminal": record.terminal},
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


async def task_download(request: Request, ctx: Any) -> Response:
    try:
        record = _record(ctx, request.path_params["task_id"])
        url, sandbox = await in_thread(_sandbox, ctx, record)
        path = cluster.sandbox_path(sandbox, request.query_params.get("path", ""))
        answer, body = await cluster.download(request, ctx, url, path)
    except NotFound as missing:
        return message(request, ctx, 404, "No such task", str(missing))
    except ValueError as error:
        return message(request, ctx, 400, "Not a sandbox path", str(error))
    except cluster.Unreadable as error:
        return message(request, ctx, error.status, "Cannot download", str(error))
    name = re.sub(r"[^\w.-]+", "_", path.rsplit("/", 1)[-1]) or "download"
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    if answer.headers.get("content-length"):
        headers["Content-Length"] = answer.headers["content-length"]
    return StreamingResponse(body, media_type="application/octet-stream", headers=headers)


# -- jobs -------------------------------------------------------------------------------------------

async def jobs(request: Request, ctx: Any) -> Response:
    rows = await in_thread(model.job_rows, ctx)
    return show(request, ctx, "jobs", "jobs.html", {"rows": rows}, parts={"jobs-live": "jobs_table.html"})


async def job(request: Request, ctx: Any, *, error: str = "", status: int = 200) -> Response:
    job_id = request.path_params["job_id"]
    try:
        detail = await in_thread(model.job_detail, ctx, job_id)
    except NotFound as missing:
        return message(request, ctx, 404, "No such job", str(missing))
    return show(request, ctx, "jobs", "job.html", {**detail, "job_id": job_id, "error": error}, status=status,
                parts={"job-live": "job_live.html"})


async def new_job(request: Request, ctx: Any) -> Response:
    return show(request, ctx, "jobs", "job_new.html", forms.job_form_values(forms.JOB_DEFAULTS))


# -- deployments, queue, agents ---------------------------------------------------------------------

async def deployments(request: Request, ctx: Any, *, error: str = "", status: int = 200) -> Response:
    def read() -> dict[str, Any]:
        rows = {row.id: row for row in model.app_rows(ctx)}
        return {"deployments": [{**view, "rows": [rows[i] for i in view["affectedApps"] if i in rows]}
                                for view in marathon_views.deployments_view(ctx.services)],
                "waiting": [row for row in rows.values() if row.waiting],
                "job_queue": metronome_views.queue_view(ctx.jobs)}

    return show(request, ctx, "deployments", "deployments.html", {**await in_thread(read), "error": error},
                status=status, parts={"deployments-live": "deployments_live.html"})


async def agents(request: Request, ctx: Any) -> Response:
    summary = await cluster.cluster_summary(request, ctx)
    return show(request, ctx, "agents", "agents.html", {"cluster": summary}, parts={"agents-live": "agents_live.html"})


async def agent(request: Request, ctx: Any) -> Response:
    agent_id = request.path_params["agent_id"]
    summary = await cluster.cluster_summary(request, ctx)
    found = next((a for a in summary["agents"] if a["id"] == agent_id), None)
    if found is None and not summary.get("error"):
        return message(request, ctx, 404, "No such agent", f"The master knows no agent '{agent_id}'")
    tasks = [t for t in summary["tasks"] if summary["task_agents"].get(t["id"]) == agent_id] if found else []
    ours = {t["id"] for t in tasks if ctx.core.get(t["id"]) is not None}
    return show(request, ctx, "agents", "agent.html", {"cluster": summary, "agent": found, "agent_id": agent_id,
                                                       "tasks": tasks, "ours": ours})
