"""Marathon v2 REST API over the service manager. Handlers only translate.

App ids are greedy paths (`/v2/apps/group/app/tasks`), and the double slash the
`marathon` client sends (`/v2/apps//app`) is accepted. Every change answers with a
deployment (`deploymentId`, `version`, header `Marathon-Deployment-Id`); a group change
is one deployment over its apps; a locked app answers 409 listing the deployments that
hold it (scheduler/api/errors.py). Where Marathon negotiates the content type (`/ping`,
task lists as text) the client's `Accept` decides, as in JAX-RS. What is not served
answers as a Marathon without it does (`/v2/pods`: 404); docs/mesos-compatibility.md
says, endpoint by endpoint, how close this is to Marathon.
Each handler takes the request and the scheduler's `Context`; `ROUTES` is the table.
"""
from __future__ import annotations

import asyncio
import math
import re
from typing import Any
from uuid import uuid4

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from framework.errors import Conflict, NotFound
from framework.security.gate import Access
from scheduler.api import marathon_views as views
from scheduler.api.common import (Endpoint, body_document, warn, check_privileged, client_ip, describe, embeds, flag,
                                  in_thread, negotiate, ping_answer, request_limits, serve)
from scheduler.api.errors import ApiError, bad_json, invalid
from scheduler.api.sandbox import sandbox_finder, task_sandbox
from scheduler.api.sse import event_stream, requested_types
from scheduler.context import Context
from scheduler.events import EVENT_TYPES, marathon_time
from scheduler.leader import lost_leadership
from scheduler.run_as import check_run_as, task_user
from scheduler.services.groups import canonical, inside, parent_of, plan_update
from scheduler.services.validation import update_problems
from scheduler.services.specs import (AppDefinition, AppSpecError, normalise_id, parse_app, privileged_paths,
                                      unknown_fields)

OPEN, READ, WRITE = Access.OPEN, Access.READ, Access.WRITE
APP_REF = {"$ref": "#/components/schemas/AppDefinitionUpdate"}
GROUP_SCHEMA = {  # Marathon's GroupUpdate: nested groups and apps, scaleBy, or a version to go back to
    "type": "object",
    "properties": {"id": {"type": "string", "maxLength": 255},
                   "apps": {"type": "array", "items": APP_REF, "maxItems": 256},
                   "groups": {"type": "array", "items": {"type": "object"}, "maxItems": 256},
                   "dependencies": {"type": "array", "items": {"type": "string"}},
                   "scaleBy": {"type": "number", "minimum": 0},
                   "version": {"type": "string"}},
}
# Marathon's task ids: `<app id with _ for />` then `.` or `_`, then an instance (or task) id.
TASK_ID = re.compile(r"^[a-z0-9._-]+[._](instance-)?[0-9a-f-]{8,}.*$")
TASK_IDS_SCHEMA = {"type": "object", "required": ["ids"],
                   "properties": {"ids": {"type": "array", "items": {"type": "string"}}}}
ROUTER_REPORT_SCHEMA = {"type": "object", "required": ["id"],  # scheduler/services/drain.py
                        "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 256},
                                       "group": {"type": "string", "maxLength": 64},
                                       "serving": {"type": "array", "items": {"type": "string"}},
                                       "nextReportWithin": {"type": "number", "minimum": 0, "maximum": 3600}}}


def routes(ctx: Context) -> list[Route]:
    return serve(ROUTES, ctx)


# -- reading requests ---------------------------------------------------------------------------

def _app_id(request: Request) -> str:
    try:
        return normalise_id(request.path_params["app_id"])
    except ValueError as error:
        raise invalid("/id", str(error)) from None


def _object(document: Any, path: str = "") -> dict:
    if not isinstance(document, dict):
        raise bad_json(path or "/", "error.expected.jsobject")
    if set(document) == {"version"} and not isinstance(document["version"], str):  # a rollback
        raise invalid(f"{path}/version", "error.expected.jsstring")
    return document


def _update(document: Any, path: str = "") -> dict:
    """An app update: an object whose `version` (a rollback) comes with nothing but `id`."""
    _object(document, path)
    problems = update_problems(document)
    if problems:
        raise ApiError(422, "Object is not valid", [{**d, "path": path or d["path"]} for d in problems])
    return document


def _partial(request: Request) -> bool:
    """PATCH, or PUT unless `partialUpdate=false`: fields left out keep their values."""
    return request.method == "PATCH" or request.query_params.get("partialUpdate", "true").lower() != "false"


def _label_filter(selector: str) -> Any:
    """Marathon's label selector: `k`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`."""
    checks = []
    for part in filter(None, (p.strip() for p in selector.split(","))):
        if "==" in part:
            key, value = part.split("==", 1)
            checks.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) == v)
        elif "!=" in part:
            key, value = part.split("!=", 1)
            checks.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) != v)
        else:
            checks.append(lambda labels, k=part: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def _group_id(raw: Any, path: str) -> str:
    """`/` or a normalised group id; 422 naming `path` for anything else."""
    if raw is None or (isinstance(raw, str) and not raw.strip("/")):
        return "/"
    try:
        return normalise_id(raw)
    except ValueError as error:
        raise invalid(path, str(error)) from None


def _record_of(ctx: Context, task_id: str) -> Any:
    record = ctx.core.get(task_id)
    if record is None or not record.owner.startswith("app:"):
        raise NotFound(f"Task '{task_id}' does not exist")
    return record


# -- who may ask for what -----------------------------------------------------------------------

def _document_privileged(ctx: Context, app_id: str, document: dict) -> list[str]:
    """What an update asks for that reaches past the container; a rollback (`{"version": v}`)
    asks for what that version had."""
    state = ctx.services.apps.get(app_id)
    if state is not None and set(document) == {"version"}:
        return privileged_paths(state.versions.get(str(document["version"])) or {})
    return privileged_paths(document)


def _check_user(request: Request, ctx: Context, path: str, user: Any) -> None:
    """403 unless the caller may run tasks as `user` (the framework's when None)."""
    named = user if isinstance(user, str) and user else None  # a malformed one is the parser's 422
    check_run_as(request, [(path, task_user(named, ctx.config.mesos_user))])


def _document_user(ctx: Context, app_id: str, document: dict, partial: bool) -> Any:
    """The user an update leaves the app with: a rollback (`{"version": v}`) that version's,
    a partial update without `user` the app's own."""
    state = ctx.services.apps.get(app_id)
    if state is None or (state.deleting and state.deployment is None):
        return document.get("user")
    if set(document) == {"version"}:
        return (state.versions.get(str(document["version"])) or {}).get("user")
    if "user" in document or not partial:
        return document.get("user")
    return state.app.user


# -- answers ------------------------------------------------------------------------------------

def _deployment_result(deployment: Any, status: int = 200, body: dict | None = None,
                       headers: dict | None = None) -> Response:
    return _plan_result(deployment.public_id, deployment.version, status, body, headers)


def _plan_result(plan_id: str, version: str, status: int = 200, body: dict | None = None,
                 headers: dict | None = None) -> Response:
    """Marathon's answer to a change: the deployment that makes it (`deploymentResult`)."""
    payload = body if body is not None else {"version": version, "deploymentId": plan_id}
    return JSONResponse(payload, status_code=status, headers={"Marathon-Deployment-Id": plan_id, **(headers or {})})


def _refused(where: str, message: str) -> ApiError:
    """Marathon's 400 (BadRequestException: its `message`), with the `details` entry that names
    what was refused (a body path; `/` for the request as a whole), as every refusal of this API does."""
    return ApiError(400, message, [{"path": where, "errors": [message]}])


def _wants_text(request: Request) -> bool:
    """Marathon's task lists come as JSON or as `text/plain`, as the client's Accept prefers."""
    return negotiate(request.headers.get("accept"), ["application/json", "text/plain"]) == "text/plain"


def _announce_post(request: Request, ctx: Context, app: AppDefinition) -> None:
    ctx.events.publish("api_post_event", clientIp=client_ip(request), uri=request.url.path,
                       appDefinition=app.out())


# -- apps ---------------------------------------------------------------------------------------

@describe("List apps (embed=apps.tasks|apps.counts|apps.deployments|apps.lastTaskFailure|...)",
          query=("embed", "id", "cmd", "label"))
async def list_apps(request: Request, ctx: Context) -> Response:
    embed = embeds(request)
    wanted_id = request.query_params.get("id")
    wanted_cmd = request.query_params.get("cmd")
    label = _label_filter(request.query_params.get("label", ""))
    out = []
    for app_id, state in sorted(list(ctx.services.apps.items())):
        if state.deleting:
            continue
        if wanted_id and wanted_id not in app_id:
            continue
        if wanted_cmd and wanted_cmd not in (state.app.cmd or ""):
            continue
        if not label(state.app.labels):
            continue
        out.append(views.app_view(ctx.services, state, embed))
    return JSONResponse({"apps": out})


@describe("Create an app (a deployment starts it)", request=AppDefinition, status=201)
async def create_app(request: Request, ctx: Context) -> Response:
    document = await body_document(request)
    warn(request, unknown_fields(document))
    app = parse_app(document)
    check_privileged(request, privileged_paths(app))
    _check_user(request, ctx, "/user", app.user)
    state, deployment = await in_thread(ctx.services.create, app)
    _announce_post(request, ctx, state.app)
    body = views.app_view(ctx.services, state, set())
    return _deployment_result(deployment, 201, body, {"Location": f"/v2/apps{state.app.id}"})


@describe("Update many apps", request=AppDefinition, partial=True, array=True, query=("force", "partialUpdate"))
async def update_apps(request: Request, ctx: Context) -> Response:
    documents = await body_document(request)
    if not isinstance(documents, list):
        raise bad_json("/", "error.expected.jsarray")
    if len(documents) > request_limits(request).max_items:
        raise invalid("/", f"at most {request_limits(request).max_items} apps in one call")
    partial = _partial(request)
    apps = []
    for index, document in enumerate(documents):
        _update(document, f"/({index})")
        warn(request, (f"/({index}): {m}" for m in unknown_fields(document)))
        try:
            app_id = normalise_id(document.get("id"))
        except ValueError as error:
            raise invalid(f"/({index})/id", str(error)) from None
        check_privileged(request, [f"/({index}){p}" for p in _document_privileged(ctx, app_id, document)])
        _check_user(request, ctx, f"/({index})/user", _document_user(ctx, app_id, document, partial))
        apps.append((app_id, document))
    last = None
    for app_id, document in apps:
        _, last, _ = await in_thread(ctx.services.update, app_id, document, partial=partial,
                                     force=flag(request, "force"))
    if last is None:
        raise bad_json("/", "no apps given")
    return _deployment_result(last)


@describe("Show an app (tasks, counts, deployments and lastTaskFailure embedded)", query=("embed",))
async def get_app(request: Request, ctx: Context) -> Response:
    state = ctx.services.get(_app_id(request))
    return JSONResponse({"app": views.app_view(ctx.services, state, embeds(request), single=True)})


@describe("Replace or patch an app (a new version); {\"version\": v} rolls back", request=AppDefinition,
          partial=True, query=("force", "partialUpdate"))
async def put_app(request: Request, ctx: Context) -> Response:
    app_id = _app_id(request)
    document = _update(await body_document(request))
    warn(request, unknown_fields(document))
    if "id" in document:
        try:
            same = normalise_id(document["id"]) == app_id
        except ValueError as error:
            raise invalid("/id", str(error)) from None
        if not same:
            raise invalid("/id", "the id in the body differs from the URL")
    check_privileged(request, _document_privileged(ctx, app_id, document))
    partial = _partial(request)
    _check_user(request, ctx, "/user", _document_user(ctx, app_id, document, partial))
    state, deployment, created = await in_thread(ctx.services.update, app_id, document, partial=partial,
                                                 force=flag(request, "force"))
    _announce_post(request, ctx, state.app)
    return _deployment_result(deployment, 201 if created else 200)


@describe("Delete an app (its instances are stopped)", query=("force",))
async def delete_app(request: Request, ctx: Context) -> Response:
    deployment = await in_thread(ctx.services.delete, _app_id(request), flag(request, "force"))
    return _deployment_result(deployment)


@describe("Restart every instance (rolling, following upgradeStrategy)", query=("force",))
async def restart_app(request: Request, ctx: Context) -> Response:
    deployment = await in_thread(ctx.services.restart, _app_id(request), flag(request, "force"))
    return _deployment_result(deployment)


@describe("An app's tasks (JSON, or text/plain as Accept asks)")
async def app_tasks(request: Request, ctx: Context) -> Response:
    state = ctx.services.get(_app_id(request))
    if _wants_text(request):
        return PlainTextResponse(views.tasks_text(ctx.services, [state]))
    return JSONResponse({"tasks": [views.task_view(ctx.services, r, state)
                                   for r in ctx.services.records(state.app.id)]})


@describe("Kill an app's tasks (host=, scale=true lowers instances)", query=("host", "scale", "force"))
async def kill_app_tasks(request: Request, ctx: Context) -> Response:
    state = ctx.services.get(_app_id(request))
    host = request.query_params.get("host")
    records = [r for r in ctx.services.records(state.app.id) if not host or r.hostname == host]
    result = await in_thread(ctx.services.kill_tasks, [r.task_id for r in records], flag(request, "scale"),
                             flag(request, "force"))
    if flag(request, "scale") and result:
        return _deployment_result(result[-1])
    return JSONResponse({"tasks": [views.task_view(ctx.services, r, state) for r in records]})


@describe("Kill one task (scale=true lowers instances)", query=("scale", "force"))
async def kill_app_task(request: Request, ctx: Context) -> Response:
    state = ctx.services.get(_app_id(request))
    record = _record_of(ctx, request.path_params["task_id"])
    result = await in_thread(ctx.services.kill_tasks, [record.task_id], flag(request, "scale"),
                             flag(request, "force"))
    if flag(request, "scale") and result:
        return _deployment_result(result[-1])
    return JSONResponse({"task": views.task_view(ctx.services, record, state)})


@describe("An app's versions")
async def app_versions(request: Request, ctx: Context) -> Response:
    state = ctx.services.get(_app_id(request))
    return JSONResponse({"versions": sorted(state.versions, reverse=True)})


@describe("An app as it was at a version")
async def app_version(request: Request, ctx: Context) -> Response:
    state = ctx.services.get(_app_id(request))
    version = request.path_params["version"]
    if version not in state.versions:
        raise NotFound(f"App '{state.app.id}' does not exist in version {version}")
    return JSONResponse(AppDefinition.model_validate(state.versions[version]).out())


# -- tasks --------------------------------------------------------------------------------------

@describe("Every app task (status=running|staging|...; JSON, or text/plain as Accept asks)", query=("status",))
async def list_tasks(request: Request, ctx: Context) -> Response:
    if _wants_text(request):
        states = [s for _, s in sorted(list(ctx.services.apps.items())) if not s.deleting]
        return PlainTextResponse(views.tasks_text(ctx.services, states))
    wanted = {s.lower() for v in [*request.query_params.getlist("status"), *request.query_params.getlist("status[]")]
              for s in v.split(",") if s}
    tasks = []
    for app_id, state in sorted(list(ctx.services.apps.items())):
        for record in ctx.services.records(app_id):
            view = views.task_view(ctx.services, record, state)
            if not wanted or view["state"].removeprefix("TASK_").lower() in wanted:
                tasks.append(view)
    return JSONResponse({"tasks": tasks})


@describe("Kill tasks by id (scale=true lowers their apps' instances; wipe=true forgets them)",
          request=TASK_IDS_SCHEMA, query=("scale", "force", "wipe"))
async def delete_tasks(request: Request, ctx: Context) -> Response:
    """Marathon's TasksResource.killTasks: an id that is no task id is refused (400), ids of
    tasks that are not (or no longer) there are ignored. `wipe` (in Marathon: a resident task's
    reservation dropped too) kills as a plain kill does here: dockyard keeps no reservations."""
    if flag(request, "scale") and flag(request, "wipe"):
        raise _refused("/", "You cannot use scale and wipe at the same time.")
    document = await body_document(request)
    ids = document.get("ids") if isinstance(document, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_json("/ids", "error.expected.jsarray")
    for index, task_id in enumerate(ids):
        if not TASK_ID.match(task_id):
            raise _refused(f"/ids({index})", f"Invalid task id '{task_id}'.")
    records = [r for r in (ctx.core.get(i) for i in dict.fromkeys(ids))
               if r is not None and r.owner.startswith("app:") and not r.terminal]
    result = await in_thread(ctx.services.kill_tasks, [r.task_id for r in records], flag(request, "scale"),
                             flag(request, "force"))
    if flag(request, "scale"):
        if result:
            return _deployment_result(result[-1])
        return _plan_result(str(uuid4()), marathon_time(ctx.services.clock()))
    return JSONResponse({"tasks": [views.task_view(ctx.services, r) for r in records]})


# -- deployments --------------------------------------------------------------------------------

@describe("Running deployments")
async def list_deployments(request: Request, ctx: Context) -> Response:
    return JSONResponse(views.deployments_view(ctx.services))


@describe("Cancel a deployment: roll back (200), or with force=true just stop (202)", query=("force",))
async def delete_deployment(request: Request, ctx: Context) -> Response:
    force = flag(request, "force")
    rollback = await in_thread(ctx.services.cancel, request.path_params["deployment_id"], force)
    if force or rollback is None:
        return Response(status_code=202)
    return _deployment_result(rollback)


# -- groups (Marathon's GroupsResource over scheduler/services/groups.py) --------------------------

GROUP_PATHS = (  # Marathon's GroupsResource path matchers, tried before a plain group id
    (re.compile(r"^(?:(.+)/)?apps$"), "apps"),
    (re.compile(r"^(?:(.+)/)?versions$"), "versions"),
    (re.compile(r"^(?:(.+)/)?versions/(.+)$"), "version"),
)


def _path_group(raw: str) -> str:
    """The group a path names: `/` for the root, else a normalised id (422 on `/id` when bad)."""
    return _group_id(raw.strip("/") or None, "/id")


def _known_group(ctx: Context, group_id: str) -> None:
    if not ctx.services.groups.exists(group_id, ctx.services.app_ids()):
        raise NotFound(f"Group '{group_id}' does not exist")


@describe("A group with its apps and subgroups (embed=group.apps|group.groups|group.pods|group.apps.tasks|...); "
          "{id}/apps, {id}/versions, {id}/versions/{version}", query=("embed",))
async def get_group(request: Request, ctx: Context) -> Response:
    raw = request.path_params.get("group_id", "").strip("/")
    services = ctx.services
    for pattern, kind in GROUP_PATHS:
        found = pattern.match(raw)
        if found is None:
            continue
        group_id = _path_group(found.group(1) or "")
        _known_group(ctx, group_id)
        if kind == "apps":
            app_embeds = {e.split(".", 2)[-1] for e in embeds(request, prefixed=True)}
            return JSONResponse([views.app_view(services, services.apps[i], app_embeds)
                                 for i in services.app_ids() if parent_of(i) == group_id])
        if kind == "versions":
            return JSONResponse(services.groups.versions(group_id))
        snapshot = services.groups.snapshot_at(group_id, found.group(2))
        if snapshot is None:
            raise NotFound(f"Group '{group_id}' does not exist in version {found.group(2)}")
        return JSONResponse(views.group_version_view(snapshot, group_id))
    group_id = _path_group(raw)
    _known_group(ctx, group_id)
    return JSONResponse(views.group_view(services, group_id, embeds(request, prefixed=True)))


@describe("Create (POST) or change (PUT, PATCH) a group: nested apps and groups, scaleBy, or a version to go "
          "back to (dryRun=true answers the steps only)", request=GROUP_SCHEMA, query=("force", "dryRun"))
async def put_group(request: Request, ctx: Context) -> Response:
    """Marathon's GroupsResource create/update. The group is the body's `id` taken relative to
    the path; the whole change is checked before any of it is deployed, and deployed as one."""
    services = ctx.services
    raw = request.path_params.get("group_id", "").strip("/")
    older = GROUP_PATHS[2][0].match(raw)
    if older is not None and request.method == "PUT":  # the older `PUT /v2/groups/{id}/versions/{v}` rollback
        return await _rollback(request, ctx, _path_group(older.group(1) or ""), older.group(2))
    root = _path_group(raw)
    document = _object(await body_document(request))
    raw_id = document.get("id")
    if raw_id is not None and not isinstance(raw_id, str):
        raise bad_json("/id", "error.expected.jsstring")
    group_id = _group_id(canonical(raw_id, root), "/id") if raw_id else root
    force, dry_run = flag(request, "force"), flag(request, "dryRun")
    if "version" in document:
        if not isinstance(document["version"], str):
            raise invalid("/version", "error.expected.jsstring")
        return await _rollback(request, ctx, group_id, document["version"])
    if "scaleBy" in document:
        factor = _scale_factor(request, ctx, group_id, document["scaleBy"])
        _known_group(ctx, group_id)
        plan_id, version = await in_thread(services.scale_group, group_id, factor, force)
        return _plan_result(plan_id, version)
    change = plan_update(group_id, document, services.app_ids(), services.groups.dependencies(),
                         check_id=_group_id)
    limit = request_limits(request)
    if len(change.apps) > limit.max_items:
        raise invalid("/apps", f"at most {limit.max_items} apps in one call")
    targets: dict[str, AppDefinition] = {}
    for where, app_id, app in change.apps:  # every member checked before anything is deployed
        warn(request, (f"{where}: {m}" for m in unknown_fields(app)))
        try:
            parsed = parse_app({**app, "id": app_id})
        except AppSpecError as error:
            raise AppSpecError([{**d, "path": where + d["path"].rstrip("/")} for d in error.details]) from None
        check_privileged(request, [where + p for p in privileged_paths(parsed)])
        _check_user(request, ctx, f"{where}/user", parsed.user)
        targets[app_id] = parsed
    if request.method == "POST":
        if services.groups.exists(group_id, services.app_ids()) and group_id != "/":
            raise Conflict(f"Group {group_id} is already created. Use PUT to change this group.")
        if group_id in services.apps and not services.apps[group_id].deleting:
            raise Conflict(f"An app with the path {group_id} already exists.")
    if dry_run:
        return JSONResponse({"steps": views.planned_steps(services, group_id, targets, change.keep)})
    plan_id, version = await in_thread(services.deploy_group, group_id, targets, change.keep, change.groups, force)
    if request.method == "POST":
        return _plan_result(plan_id, version, 201, headers={"Location": group_id})
    return _plan_result(plan_id, version)


async def _rollback(request: Request, ctx: Context, group_id: str, version: str) -> Response:
    """A group back to a kept version: its apps as they were then, checked as a change is."""
    snapshot = ctx.services.groups.snapshot_at(group_id, version)
    for app_id, definition in (snapshot or {}).get("apps", {}).items():
        if inside(app_id, group_id):
            check_privileged(request, [f"/apps({app_id})" + p for p in privileged_paths(definition)])
            _check_user(request, ctx, f"/apps({app_id})/user", definition.get("user"))
    plan_id, new_version = await in_thread(ctx.services.rollback_group, group_id, version, flag(request, "force"))
    return _plan_result(plan_id, new_version)


def _scale_factor(request: Request, ctx: Context, group_id: str, factor: Any) -> float:
    """`scaleBy`: a non-negative number that leaves every app within --max-instances."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < float("inf"):
        raise invalid("/scaleBy", "must be a non-negative number")
    ceiling = request_limits(request).max_instances
    for app_id in ctx.services.app_ids():
        if inside(app_id, group_id):
            wanted = math.ceil(ctx.services.apps[app_id].app.instances * factor)
            if wanted > ceiling:
                raise invalid("/scaleBy", f"would scale {app_id} to {wanted} instances: at most {ceiling}")
    return float(factor)


@describe("Delete a group: its apps stopped and removed, its subgroups with it (the root: everything)",
          query=("force",))
async def delete_group(request: Request, ctx: Context) -> Response:
    group_id = _path_group(request.path_params.get("group_id", ""))
    plan_id, version = await in_thread(ctx.services.delete_group, group_id, flag(request, "force"))
    return _plan_result(plan_id, version)


# -- queue, info, leader, events ----------------------------------------------------------------

@describe("Apps waiting to launch: backoff delay and the offers they saw (embed=lastUnusedOffers)",
          query=("embed",))
async def get_queue(request: Request, ctx: Context) -> Response:
    last_unused = "lastUnusedOffers" in embeds(request)
    return JSONResponse({"queue": await in_thread(views.queue_view, ctx.services, last_unused)})


@describe("Reset the launch delay of an app in the queue (its backoff starts over)")
async def reset_delay(request: Request, ctx: Context) -> Response:
    await in_thread(ctx.services.reset_delay, _app_id(request))
    return Response(status_code=204)


@describe("About this Marathon-compatible server")
async def info(request: Request, ctx: Context) -> Response:
    config = ctx.config
    return JSONResponse({
        "name": "dockyard", "version": "1.10.0", "buildref": "dockyard", "elected": True,
        "leader": f"{config.ip}:{config.port}", "frameworkId": ctx.core.framework_id,
        "marathon_config": {"master": config.master, "framework_name": config.name, "hostname": config.ip,
                            "checkpoint": True, "failover_timeout": 604800, "ha": bool(config.zk),
                            "mesos_role": None, "mesos_user": config.mesos_user,
                            "webui_url": f"{config.scheme}://{config.ip}:{config.port}/ui/",
                            "decline_offer_duration": 120000, "features": []},
        "zookeeper_config": {"zk": config.zk, "zk_timeout": 10000, "zk_session_timeout": 10000,
                             "zk_max_versions": 50},
        "http_config": {"http_port": config.port, "https_port": 8443},
    })


@describe("The leading scheduler")
async def leader(request: Request, ctx: Context) -> Response:
    return JSONResponse({"leader": f"{ctx.config.ip}:{ctx.config.port}"})


@describe("Abdicate: this scheduler stops leading, by exiting as Marathon does (with --zk another takes over; "
          "alone, whatever supervises it starts it again)", query=("backup", "restore"))
async def abdicate(request: Request, ctx: Context) -> Response:
    """Marathon's LeaderResource.delete. Without `--zk` this process leads alone (the proxy of
    scheduler/proxy.py answers this call itself when it runs with `--zk`)."""
    if request.query_params.get("backup") or request.query_params.get("restore"):
        raise _refused("/", "backup and restore are not supported: dockyard's state is its store "
                            "(the data dir, or ZooKeeper with --zk)")
    if ctx.driver is None:  # an app with nothing acting behind it (built, not started): it does not lead
        raise NotFound("There is no leader")
    asyncio.get_running_loop().call_later(0.2, lost_leadership, "abdicated through DELETE /v2/leader")
    return JSONResponse({"message": "Leadership abdicated"})


async def ping(request: Request, ctx: Context) -> Response:
    """Marathon 1.5+'s `/ping`, with its content negotiation (common.ping_answer)."""
    status, body, media_type = ping_answer(request.headers.get("accept"))
    return Response(body, status_code=status, media_type=media_type)


async def plugins(request: Request, ctx: Context) -> Response:
    """Marathon's PluginsResource: the plugins loaded, none here."""
    return JSONResponse({"plugins": []})


async def pods_unsupported(request: Request, ctx: Context) -> Response:
    """No pods: every `/v2/pods` call answers as a Marathon without the pods resource does (404),
    so that a client's `HEAD /v2/pods` capability probe learns pods are not supported."""
    return JSONResponse({"message": "HTTP 404 Not Found"}, status_code=404)


@describe("Server-sent events with Marathon's event types (`event_type` filters)", query=("event_type",))
async def events(request: Request, ctx: Context) -> Response:
    """Server-sent events with Marathon's event types (`event_type` filters)."""
    types = requested_types(request)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise ApiError(400, f"Unknown event type(s): {', '.join(unknown)}")
    return event_stream(request, ctx.events, types, attached=not types or "event_stream_attached" in types,
                        detached=lambda client: ctx.events.publish("event_stream_detached", remoteAddress=client))


async def subscriptions_gone(request: Request, ctx: Context) -> Response:
    """Removed in Marathon 1.5: the event stream replaces callbacks."""
    raise NotFound("Event subscriptions are not supported; use /v2/events")


# -- dockyard's own ------------------------------------------------------------------------------

@describe("dockyard: where an app's instances would go now, and why not (no launch)", request=AppDefinition)
async def plan_app(request: Request, ctx: Context) -> Response:
    document = await body_document(request)
    warn(request, unknown_fields(document))
    app = parse_app(document)
    agents, plan = await in_thread(ctx.services.plan_preview, app)
    return JSONResponse(views.plan_view(app, agents, plan))


@describe("dockyard: where a task's output lives (for `dockyard task logs`)")
async def task_files(request: Request, ctx: Context) -> Response:
    record = _record_of(ctx, request.path_params["task_id"])
    agent = ctx.core.agent(record.agent_id) if record.agent_id else None
    url = (agent or {}).get("url")
    sandbox = None
    if url:
        finder = sandbox_finder(ctx)
        directory = await in_thread(finder.executor_directory, url, ctx.core.framework_id, record.task_id)
        if directory:
            sandbox = task_sandbox(directory, record.sandbox)
    state = views.task_view(ctx.services, record)["state"]
    return JSONResponse({"id": record.task_id, "state": state, "sandbox": sandbox, "agentUrl": url})


@describe("dockyard: a router says which instances it still serves (drain before kill; docs/router.md)",
          request=ROUTER_REPORT_SCHEMA)
async def router_report(request: Request, ctx: Context) -> Response:
    """Any reader may report: a report only ends early a drain whose kill is decided already."""
    return JSONResponse(ctx.services.router_report(await body_document(request)))


APP = "/v2/apps/{app_id:path}"
GROUP = "/v2/groups/{group_id:path}"
ROUTES = (
    Endpoint("/v2/apps", list_apps, ("GET",), READ),
    Endpoint("/v2/apps", create_app, ("POST",), WRITE),
    Endpoint("/v2/apps", update_apps, ("PUT", "PATCH"), WRITE),
    Endpoint(APP + "/tasks/{task_id}", kill_app_task, ("DELETE",), WRITE),
    Endpoint(APP + "/tasks", app_tasks, ("GET",), READ),
    Endpoint(APP + "/tasks", kill_app_tasks, ("DELETE",), WRITE),
    Endpoint(APP + "/restart", restart_app, ("POST",), WRITE),
    Endpoint(APP + "/versions/{version}", app_version, ("GET",), READ),
    Endpoint(APP + "/versions", app_versions, ("GET",), READ),
    Endpoint(APP, get_app, ("GET",), READ),
    Endpoint(APP, put_app, ("PUT", "PATCH"), WRITE),
    Endpoint(APP, delete_app, ("DELETE",), WRITE),
    Endpoint("/v2/tasks", list_tasks, ("GET",), READ),
    Endpoint("/v2/tasks/delete", delete_tasks, ("POST",), WRITE),
    Endpoint("/v2/deployments", list_deployments, ("GET",), READ),
    Endpoint("/v2/deployments/{deployment_id}", delete_deployment, ("DELETE",), WRITE),
    Endpoint("/v2/groups", get_group, ("GET",), READ),
    Endpoint("/v2/groups", put_group, ("POST", "PUT", "PATCH"), WRITE),
    Endpoint("/v2/groups", delete_group, ("DELETE",), WRITE),
    Endpoint(GROUP, get_group, ("GET",), READ),
    Endpoint(GROUP, put_group, ("POST", "PUT", "PATCH"), WRITE),
    Endpoint(GROUP, delete_group, ("DELETE",), WRITE),
    Endpoint("/v2/queue", get_queue, ("GET",), READ),
    Endpoint("/v2/queue/{app_id:path}/delay", reset_delay, ("DELETE",), WRITE),
    Endpoint("/v2/info", info, ("GET",), READ),
    Endpoint("/v2/leader", leader, ("GET",), READ),
    Endpoint("/v2/leader", abdicate, ("DELETE",), WRITE),
    Endpoint("/ping", ping, ("GET",), OPEN),
    Endpoint("/v2/plugins", plugins, ("GET",), READ),
    Endpoint("/v2/pods", pods_unsupported, ("GET", "POST"), {"GET": READ, "POST": WRITE}),
    Endpoint("/v2/pods::status", pods_unsupported, ("GET",), READ),
    Endpoint("/v2/pods/{pod_path:path}", pods_unsupported, ("GET", "PUT", "DELETE"),
             {"GET": READ, "PUT": WRITE, "DELETE": WRITE}),
    Endpoint("/v2/events", events, ("GET",), READ),
    Endpoint("/v2/eventSubscriptions", subscriptions_gone, ("GET", "POST", "DELETE"),
             {"GET": READ, "POST": WRITE, "DELETE": WRITE}),
    # A dry run: it changes nothing, so a viewer may ask where an app would go.
    Endpoint("/dockyard/v1/plan", plan_app, ("POST",), READ),
    Endpoint("/dockyard/v1/tasks/{task_id}", task_files, ("GET",), READ),
    Endpoint("/dockyard/v1/routers", router_report, ("POST",), READ),
)
