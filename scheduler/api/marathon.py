"""Marathon v2 REST API over the service manager. Handlers only translate.

App ids are greedy paths (`/v2/apps/group/app/tasks`), and the double slash the
`marathon` client sends (`/v2/apps//app`) is accepted. Every change answers with a
deployment (`deploymentId`, `version`, header `Marathon-Deployment-Id`); a locked
app answers 409 listing the deployments that hold it.
"""
from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from framework.security.gate import Access
from scheduler.api.common import (ApiError, EventStream, api_route, body_document, check_privileged, describe,
                                  embeds, error_response, flag, in_thread, invalid, render_failure, request_limits,
                                  sse_frame)
from scheduler.api.sandbox import sandbox_finder, task_sandbox
from scheduler.events import EVENT_TYPES
from scheduler.run_as import check_run_as, task_user
from scheduler.services.manager import Conflict, NotFound, ServiceManager
from scheduler.services.specs import AppDefinition, AppSpecError, normalise_id, parse_app, privileged_paths

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 15.0
READ, WRITE = Access.READ, Access.WRITE
APP_REF = {"$ref": "#/components/schemas/AppDefinitionUpdate"}
GROUP_SCHEMA = {  # the basics of Marathon's Group: a tree built from app ids
    "type": "object",
    "properties": {"id": {"type": "string", "maxLength": 255},
                   "apps": {"type": "array", "items": APP_REF, "maxItems": 256},
                   "scaleBy": {"type": "number", "minimum": 0}},
}
TASK_IDS_SCHEMA = {"type": "object", "required": ["ids"],
                   "properties": {"ids": {"type": "array", "items": {"type": "string"}}}}


def _app_id(request: Request) -> str:
    try:
        return normalise_id(request.path_params["app_id"])
    except ValueError as error:
        raise ApiError(422, "Object is not valid", [{"path": "/id", "errors": [str(error)]}]) from None


def _object(document: Any, path: str = "") -> dict:
    if not isinstance(document, dict):
        raise ApiError(400, "Invalid JSON", [{"path": path or "/", "errors": ["error.expected.jsobject"]}])
    if set(document) == {"version"} and not isinstance(document["version"], str):  # a rollback
        raise invalid(f"{path}/version", "error.expected.jsstring")
    return document


def _deployment_result(deployment: Any, status: int = 200, body: dict | None = None,
                       headers: dict | None = None) -> Response:
    payload = body if body is not None else {"deploymentId": deployment.id, "version": deployment.version}
    return JSONResponse(payload, status_code=status,
                        headers={"Marathon-Deployment-Id": deployment.id, **(headers or {})})


def handle(handler: Any) -> Any:
    """`guard`, plus Marathon's 409 body (`deployments`) for a locked app. The handler runs
    once: every other error is rendered from the exception it raised."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Conflict as error:
            extra = {"deployments": [{"id": d} for d in error.deployments]} if error.deployments else {}
            return error_response(409, str(error), **extra)
        except NotFound as error:
            return error_response(404, str(error))
        except Exception as error:  # rendered, never swallowed: the client sees the reason
            return render_failure(request, error)
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    wrapped.__dict__.update(handler.__dict__)
    return wrapped


def _label_filter(selector: str):
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


def _tasks_text(views: list[dict]) -> str:
    """`text/plain` tasks: `appId servicePort host:port...` per line, as Marathon."""
    lines = []
    for task in views:
        for index, port in enumerate(task.get("servicePorts") or [0]):
            hosts = [f"{task['host']}:{task['ports'][index]}"] if index < len(task["ports"]) else []
            lines.append("\t".join([task["appId"].strip("/").replace("/", "_"), str(port), *hosts]))
    return "\n".join(lines) + ("\n" if lines else "")


def routes(ctx: Any) -> list[Route]:
    services: ServiceManager | None = ctx.services
    if services is None:
        return []

    def record_of(task_id: str) -> Any:
        record = ctx.core.get(task_id)
        if record is None or not record.owner.startswith("app:"):
            raise NotFound(f"Task '{task_id}' does not exist")
        return record

    def _document_privileged(app_id: str, document: dict) -> list[str]:
        """What an update asks for that reaches past the container; a rollback (`{"version": v}`)
        asks for what that version had."""
        state = services.apps.get(app_id)
        if state is not None and set(document) == {"version"}:
            return privileged_paths(state.versions.get(str(document["version"])) or {})
        return privileged_paths(document)

    def _check_user(request: Request, path: str, user: Any) -> None:
        """403 unless the caller may run tasks as `user` (the framework's when None)."""
        named = user if isinstance(user, str) and user else None  # a malformed one is the parser's 422
        check_run_as(request, [(path, task_user(named, ctx.config.mesos_user))])

    def _document_user(app_id: str, document: dict, partial: bool) -> Any:
        """The user an update leaves the app with: a rollback (`{"version": v}`) that version's,
        a partial update without `user` the app's own."""
        state = services.apps.get(app_id)
        if state is None or (state.deleting and state.deployment is None):
            return document.get("user")
        if set(document) == {"version"}:
            return (state.versions.get(str(document["version"])) or {}).get("user")
        if "user" in document or not partial:
            return document.get("user")
        return state.app.user

    # -- apps -------------------------------------------------------------------------------

    @handle
    @describe("List apps (embed=apps.tasks|apps.counts|apps.deployments|apps.lastTaskFailure|...)",
              query=("embed", "id", "cmd", "label"))
    async def list_apps(request: Request) -> Response:
        embed = embeds(request)
        wanted_id = request.query_params.get("id")
        wanted_cmd = request.query_params.get("cmd")
        label = _label_filter(request.query_params.get("label", ""))
        out = []
        for app_id, state in sorted(list(services.apps.items())):
            if state.deleting:
                continue
            if wanted_id and wanted_id not in app_id:
                continue
            if wanted_cmd and wanted_cmd not in (state.app.cmd or ""):
                continue
            if not label(state.app.labels):
                continue
            out.append(services.app_view(state, embed))
        return JSONResponse({"apps": out})

    @handle
    @describe("Create an app (a deployment starts it)", request=AppDefinition, status=201)
    async def create_app(request: Request) -> Response:
        document = await body_document(request)
        app = parse_app(document)
        check_privileged(request, privileged_paths(app))
        _check_user(request, "/user", app.user)
        state, deployment = await in_thread(services.create, app)
        ctx.events.publish("api_post_event", clientIp=request.client.host if request.client else "",
                           uri=request.url.path, appDefinition=state.app.out())
        body = services.app_view(state, set())
        return _deployment_result(deployment, 201, body, {"Location": f"/v2/apps{state.app.id}"})

    @handle
    @describe("Update many apps", request=AppDefinition, partial=True, array=True, query=("force", "partialUpdate"))
    async def update_apps(request: Request) -> Response:
        documents = await body_document(request)
        if not isinstance(documents, list):
            raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["error.expected.jsarray"]}])
        if len(documents) > request_limits(request).max_items:
            raise invalid("/", f"at most {request_limits(request).max_items} apps in one call")
        apps = []
        for index, document in enumerate(documents):
            _object(document, f"/({index})")
            try:
                app_id = normalise_id(document.get("id"))
            except ValueError as error:
                raise invalid(f"/({index})/id", str(error)) from None
            check_privileged(request, [f"/({index}){p}" for p in _document_privileged(app_id, document)])
            _check_user(request, f"/({index})/user", _document_user(
                app_id, document, request.method == "PATCH" or flag_default(request)))
            apps.append((app_id, document))
        last = None
        for app_id, document in apps:
            _, last, _ = await in_thread(services.update, app_id, document,
                                         partial=request.method == "PATCH" or flag_default(request),
                                         force=flag(request, "force"))
        if last is None:
            raise ApiError(400, "Invalid JSON", [{"path": "/", "errors": ["no apps given"]}])
        return _deployment_result(last)

    def flag_default(request: Request) -> bool:
        return request.query_params.get("partialUpdate", "true").lower() != "false"

    @handle
    @describe("Show an app (tasks, counts, deployments and lastTaskFailure embedded)", query=("embed",))
    async def get_app(request: Request) -> Response:
        state = services.get(_app_id(request))
        return JSONResponse({"app": services.app_view(state, embeds(request), single=True)})

    @handle
    @describe("Replace or patch an app (a new version); {\"version\": v} rolls back", request=AppDefinition,
              partial=True, query=("force", "partialUpdate"))
    async def put_app(request: Request) -> Response:
        app_id = _app_id(request)
        document = _object(await body_document(request))
        if "id" in document:
            try:
                same = normalise_id(document["id"]) == app_id
            except ValueError as error:
                raise invalid("/id", str(error)) from None
            if not same:
                raise invalid("/id", "the id in the body differs from the URL")
        check_privileged(request, _document_privileged(app_id, document))
        partial = request.method == "PATCH" or flag_default(request)
        _check_user(request, "/user", _document_user(app_id, document, partial))
        state, deployment, created = await in_thread(services.update, app_id, document, partial=partial,
                                                     force=flag(request, "force"))
        ctx.events.publish("api_post_event", clientIp=request.client.host if request.client else "",
                           uri=request.url.path, appDefinition=state.app.out())
        return _deployment_result(deployment, 201 if created else 200)

    @handle
    @describe("Delete an app (its instances are stopped)", query=("force",))
    async def delete_app(request: Request) -> Response:
        deployment = await in_thread(services.delete, _app_id(request), flag(request, "force"))
        return _deployment_result(deployment)

    @handle
    @describe("Restart every instance (rolling, following upgradeStrategy)", query=("force",))
    async def restart_app(request: Request) -> Response:
        deployment = await in_thread(services.restart, _app_id(request), flag(request, "force"))
        return _deployment_result(deployment)

    @handle
    @describe("An app's tasks")
    async def app_tasks(request: Request) -> Response:
        state = services.get(_app_id(request))
        views = [services.task_view(r, state) for r in services.records(state.app.id)]
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse(_tasks_text(views))
        return JSONResponse({"tasks": views})

    @handle
    @describe("Kill an app's tasks (host=, scale=true lowers instances)", query=("host", "scale", "force"))
    async def kill_app_tasks(request: Request) -> Response:
        state = services.get(_app_id(request))
        host = request.query_params.get("host")
        records = [r for r in services.records(state.app.id) if not host or r.hostname == host]
        ids = [r.task_id for r in records]
        result = await in_thread(services.kill_tasks, ids, flag(request, "scale"), flag(request, "force"))
        if flag(request, "scale") and result:
            return _deployment_result(result[-1])
        return JSONResponse({"tasks": [services.task_view(r, state) for r in records]})

    @handle
    @describe("Kill one task (scale=true lowers instances)", query=("scale", "force"))
    async def kill_app_task(request: Request) -> Response:
        state = services.get(_app_id(request))
        record = record_of(request.path_params["task_id"])
        result = await in_thread(services.kill_tasks, [record.task_id], flag(request, "scale"),
                                 flag(request, "force"))
        if flag(request, "scale") and result:
            return _deployment_result(result[-1])
        return JSONResponse({"task": services.task_view(record, state)})

    @handle
    @describe("An app's versions")
    async def app_versions(request: Request) -> Response:
        state = services.get(_app_id(request))
        return JSONResponse({"versions": sorted(state.versions, reverse=True)})

    @handle
    @describe("An app as it was at a version")
    async def app_version(request: Request) -> Response:
        state = services.get(_app_id(request))
        version = request.path_params["version"]
        if version not in state.versions:
            raise NotFound(f"App '{state.app.id}' does not exist in version {version}")
        return JSONResponse(AppDefinition.model_validate(state.versions[version]).out())

    # -- tasks -------------------------------------------------------------------------------

    @handle
    @describe("Every app task (status=running|staging|...)", query=("status",))
    async def list_tasks(request: Request) -> Response:
        wanted = {s.lower() for v in request.query_params.getlist("status") for s in v.split(",") if s}
        views = []
        for app_id, state in sorted(list(services.apps.items())):
            for record in services.records(app_id):
                view = services.task_view(record, state)
                if wanted and view["state"].removeprefix("TASK_").lower() not in wanted:
                    continue
                views.append(view)
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse(_tasks_text(views))
        return JSONResponse({"tasks": views})

    @handle
    @describe("Kill tasks by id (scale=true lowers their apps' instances)", request=TASK_IDS_SCHEMA,
              query=("scale", "force"))
    async def delete_tasks(request: Request) -> Response:
        document = await body_document(request)
        ids = document.get("ids") if isinstance(document, dict) else None
        if not isinstance(ids, list):
            raise ApiError(400, "Invalid JSON", [{"path": "/ids", "errors": ["error.expected.jsarray"]}])
        records = []
        for index, task_id in enumerate(ids):
            try:
                records.append(record_of(str(task_id)))
            except NotFound as error:
                raise ApiError(400, str(error), [{"path": f"/ids({index})", "errors": [str(error)]}]) from None
        result = await in_thread(services.kill_tasks, [r.task_id for r in records], flag(request, "scale"),
                                 flag(request, "force"))
        if flag(request, "scale") and result:
            return _deployment_result(result[-1])
        return JSONResponse({"tasks": [services.task_view(r) for r in records]})

    # -- deployments ---------------------------------------------------------------------------

    @handle
    @describe("Running deployments")
    async def list_deployments(request: Request) -> Response:
        return JSONResponse([d.view() for d in list(services.deployments.values())])

    @handle
    @describe("Cancel a deployment: roll back (200), or with force=true just stop (202)", query=("force",))
    async def delete_deployment(request: Request) -> Response:
        force = flag(request, "force")
        rollback = await in_thread(services.cancel, request.path_params["deployment_id"], force)
        if force or rollback is None:
            return Response(status_code=202)
        return _deployment_result(rollback)

    # -- groups (the basics: a tree built from app ids) --------------------------------------------

    def group_view(group_id: str, embed: set[str]) -> dict:
        prefix = group_id.rstrip("/") + "/"
        apps = [s for i, s in sorted(list(services.apps.items())) if i.startswith(prefix) and not s.deleting]
        direct = [s for s in apps if "/" not in s.app.id[len(prefix):]]
        children = sorted({prefix + s.app.id[len(prefix):].split("/")[0] for s in apps if s not in direct})
        versions = [s.app.version or "" for s in apps]
        return {"id": group_id or "/", "apps": [services.app_view(s, embed) for s in direct],
                "groups": [group_view(c, embed) for c in children], "pods": [], "dependencies": [],
                "version": max(versions) if versions else None, "enforceRole": False}

    @handle
    @describe("The group tree", query=("embed",))
    async def get_group(request: Request) -> Response:
        raw = request.path_params.get("group_id", "").strip("/")
        group_id = "/" + raw if raw else "/"
        if group_id != "/" and not any(i.startswith(group_id + "/") for i in list(services.apps)):
            raise NotFound(f"Group '{group_id}' does not exist")
        return JSONResponse(group_view(group_id if group_id != "/" else "", embeds(request)))

    def group_id_of(raw: Any, path: str) -> str:
        """`/` or a normalised group id; 422 naming `path` for anything else."""
        if raw is None or (isinstance(raw, str) and not raw.strip("/")):
            return "/"
        try:
            return normalise_id(raw)
        except ValueError as error:
            raise invalid(path, str(error)) from None

    @handle
    @describe("Create or update a group's apps (scaleBy, dryRun=true)", request=GROUP_SCHEMA,
              query=("force", "dryRun"))
    async def put_group(request: Request) -> Response:
        raw = request.path_params.get("group_id", "").strip("/")
        document = _object(await body_document(request))
        group_id = group_id_of(raw, "/id") if raw else group_id_of(document.get("id"), "/id")
        prefix = group_id.rstrip("/") + "/"
        limit = request_limits(request)
        force, dry_run = flag(request, "force"), flag(request, "dryRun")
        scaled: list[tuple[str, int]] = []
        if "scaleBy" in document:
            factor = document["scaleBy"]
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < float("inf"):
                raise invalid("/scaleBy", "must be a non-negative number")
            for app_id, state in sorted(list(services.apps.items())):
                if app_id.startswith(prefix) and not state.deleting:
                    wanted = state.app.instances * factor
                    if wanted > limit.max_instances:
                        raise invalid("/scaleBy", f"would scale {app_id} to {wanted:.0f} instances: "
                                                  f"at most {limit.max_instances}")
                    scaled.append((app_id, int(round(wanted))))
        apps = document.get("apps")
        if apps is None:
            apps = []
        if not isinstance(apps, list):
            raise invalid("/apps", "error.expected.jsarray")
        if len(apps) > limit.max_items:
            raise invalid("/apps", f"at most {limit.max_items} apps in one call")
        # the whole group is checked before any of it is deployed: a bad member changes nothing
        members: list[tuple[str, dict, AppDefinition]] = []
        for index, app in enumerate(apps):
            path = f"/apps({index})"
            _object(app, path)
            member_id = app.get("id")
            if not isinstance(member_id, str) or not member_id.strip("/"):
                raise invalid(f"{path}/id", "must be a non-empty path such as /group/app")
            app_id = group_id_of(member_id if member_id.startswith("/") else prefix + member_id, f"{path}/id")
            existing = services.apps.get(app_id)
            base = existing.app if existing is not None and not existing.deleting else None
            try:
                parsed = parse_app({**app, "id": app_id}, base=base)
            except AppSpecError as error:
                raise AppSpecError([{**d, "path": path + d["path"].rstrip("/")} for d in error.details]) from None
            check_privileged(request, [path + p for p in _document_privileged(app_id, app)])
            _check_user(request, f"{path}/user", parsed.user)
            members.append((app_id, app, parsed))
        services.check_dependencies({app_id: parsed.dependencies for app_id, _, parsed in members})
        if dry_run:
            return JSONResponse({"steps": []})
        deployments = []
        for app_id, instances in scaled:
            deployments.append(await in_thread(services.scale, app_id, instances, force))
        for app_id, app, _ in members:
            _, deployment, _ = await in_thread(services.update, app_id, {**app, "id": app_id}, partial=True,
                                               force=force)
            deployments.append(deployment)
        if not deployments:
            return JSONResponse({"deploymentId": None, "version": None})
        status = 201 if request.method == "POST" else 200
        return _deployment_result(deployments[-1], status)

    @handle
    @describe("Delete a group and its apps")
    async def delete_group(request: Request) -> Response:
        group_id = "/" + request.path_params.get("group_id", "").strip("/")
        last = None
        for app_id in list(services.apps):
            if app_id.startswith(group_id.rstrip("/") + "/"):
                last = await in_thread(services.delete, app_id, True)
        if last is None:
            raise NotFound(f"Group '{group_id}' does not exist")
        return _deployment_result(last)

    # -- queue, info, leader, events -------------------------------------------------------------

    @handle
    @describe("Apps waiting to launch: backoff delay and the offers they saw (embed=lastUnusedOffers)",
              query=("embed",))
    async def get_queue(request: Request) -> Response:
        last_unused = "lastUnusedOffers" in embeds(request)
        return JSONResponse({"queue": await in_thread(services.queue_view, last_unused)})

    @handle
    @describe("Reset an app's launch backoff")
    async def reset_delay(request: Request) -> Response:
        await in_thread(services.reset_delay, _app_id(request))
        return Response(status_code=204)

    @handle
    @describe("About this Marathon-compatible server")
    async def info(request: Request) -> Response:
        config = ctx.config
        leader = f"{config.ip}:{config.port}"
        return JSONResponse({
            "name": "dockyard", "version": "1.10.0", "buildref": "dockyard", "elected": True, "leader": leader,
            "frameworkId": ctx.core.framework_id,
            "marathon_config": {"master": config.master, "framework_name": config.name, "hostname": config.ip,
                                "checkpoint": True, "failover_timeout": 604800, "ha": bool(config.zk),
                                "mesos_role": None, "mesos_user": config.mesos_user, "webui_url": None,
                                "decline_offer_duration": 120000, "features": []},
            "zookeeper_config": {"zk": config.zk, "zk_timeout": 10000, "zk_session_timeout": 10000,
                                 "zk_max_versions": 50},
            "http_config": {"http_port": config.port, "https_port": 8443},
        })

    @handle
    @describe("The leading scheduler")
    async def leader(request: Request) -> Response:
        return JSONResponse({"leader": f"{ctx.config.ip}:{ctx.config.port}"})

    @describe("Server-sent events with Marathon's event types (`event_type` filters)", query=("event_type",))
    async def events(request: Request) -> Response:
        """Server-sent events with Marathon's event types (`event_type` filters)."""
        types = [t for v in request.query_params.getlist("event_type") for t in v.split(",") if t]
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            return error_response(400, f"Unknown event type(s): {', '.join(unknown)}")
        subscription = ctx.events.subscribe(types or None, max_bytes=request_limits(request).event_stream_bytes)
        client = request.client.host if request.client else ""
        attached = {"eventType": "event_stream_attached", "remoteAddress": client}

        async def stream() -> AsyncIterator[bytes]:
            try:
                if not types or "event_stream_attached" in types:
                    from scheduler.events import marathon_time

                    attached["timestamp"] = marathon_time()
                    yield f"event: event_stream_attached\ndata: {json.dumps(attached)}\n\n".encode()
                else:
                    yield b":\n\n"  # headers out now: the client knows it is attached
                while True:
                    item = await subscription.aget_encoded(KEEPALIVE_SECONDS)
                    if subscription.overflowed:
                        log.warning("event stream of %s dropped: it read too slowly", client or "?")
                        return
                    if item is None:
                        yield b"\n"  # keep-alive
                        continue
                    for piece in sse_frame(item[0]["eventType"], item[1]):
                        yield piece
            finally:
                subscription.close()
                ctx.events.publish("event_stream_detached", remoteAddress=client)

        return EventStream(stream())

    async def subscriptions_gone(request: Request) -> Response:
        """Removed in Marathon 1.5: the event stream replaces callbacks."""
        return error_response(404, "Event subscriptions are not supported; use /v2/events")

    @handle
    @describe("dockyard: where an app's instances would go now, and why not (no launch)", request=AppDefinition)
    async def plan_app(request: Request) -> Response:
        app = parse_app(await body_document(request))
        return JSONResponse(await in_thread(services.plan_preview, app))

    @handle
    @describe("dockyard: where a task's output lives (for `dockyard task logs`)")
    async def task_files(request: Request) -> Response:
        record = record_of(request.path_params["task_id"])
        agent = ctx.core.agent(record.agent_id) if record.agent_id else None
        url = (agent or {}).get("url")
        sandbox = None
        if url:
            finder = sandbox_finder(ctx)
            directory = await in_thread(finder.executor_directory, url, ctx.core.framework_id, record.task_id)
            if directory:
                sandbox = task_sandbox(directory, record.sandbox)
        state = services.task_view(record)["state"]
        return JSONResponse({"id": record.task_id, "state": state, "sandbox": sandbox, "agentUrl": url})

    app_path = "/v2/apps/{app_id:path}"
    return [
        api_route("/v2/apps", list_apps, ["GET"], READ),
        api_route("/v2/apps", create_app, ["POST"], WRITE),
        api_route("/v2/apps", update_apps, ["PUT", "PATCH"], WRITE),
        api_route(app_path + "/tasks/{task_id}", kill_app_task, ["DELETE"], WRITE),
        api_route(app_path + "/tasks", app_tasks, ["GET"], READ),
        api_route(app_path + "/tasks", kill_app_tasks, ["DELETE"], WRITE),
        api_route(app_path + "/restart", restart_app, ["POST"], WRITE),
        api_route(app_path + "/versions/{version}", app_version, ["GET"], READ),
        api_route(app_path + "/versions", app_versions, ["GET"], READ),
        api_route(app_path, get_app, ["GET"], READ),
        api_route(app_path, put_app, ["PUT", "PATCH"], WRITE),
        api_route(app_path, delete_app, ["DELETE"], WRITE),
        api_route("/v2/tasks", list_tasks, ["GET"], READ),
        api_route("/v2/tasks/delete", delete_tasks, ["POST"], WRITE),
        api_route("/v2/deployments", list_deployments, ["GET"], READ),
        api_route("/v2/deployments/{deployment_id}", delete_deployment, ["DELETE"], WRITE),
        api_route("/v2/groups", get_group, ["GET"], READ),
        api_route("/v2/groups", put_group, ["POST", "PUT", "PATCH"], WRITE),
        api_route("/v2/groups/{group_id:path}", get_group, ["GET"], READ),
        api_route("/v2/groups/{group_id:path}", put_group, ["POST", "PUT", "PATCH"], WRITE),
        api_route("/v2/groups/{group_id:path}", delete_group, ["DELETE"], WRITE),
        api_route("/v2/queue", get_queue, ["GET"], READ),
        api_route("/v2/queue/{app_id:path}/delay", reset_delay, ["DELETE"], WRITE),
        api_route("/v2/info", info, ["GET"], READ),
        api_route("/v2/leader", leader, ["GET"], READ),
        api_route("/v2/events", events, ["GET"], READ),
        api_route("/v2/eventSubscriptions", subscriptions_gone, ["GET", "POST", "DELETE"],
                  {"GET": READ, "POST": WRITE, "DELETE": WRITE}),
        # A dry run: it changes nothing, so a viewer may ask where an app would go.
        api_route("/dockyard/v1/plan", plan_app, ["POST"], READ),
        api_route("/dockyard/v1/tasks/{task_id}", task_files, ["GET"], READ),
    ]
